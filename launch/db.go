package main

import (
	"database/sql"
	"errors"
	"fmt"
	"os"
	"time"

	_ "modernc.org/sqlite" // pure Go: the launcher stays free of cgo and cross-builds as it is
)

// row is one of tail's rows in its in_tail_files table: a file by inode, where tail stopped
// reading it, and the name tail last knew it by (the rotated name once tail saw a rotation).
type row struct {
	id      int64
	name    string
	offset  int64
	inode   uint64
	rotated bool
}

// readRows reads tail's rows through SQLite, which replays what a killed Fluent Bit left in
// the write-ahead log. lastWrite is when tail last wrote the DB: no later than the agent's
// stop, and after every rotation it saw. A DB that does not exist yet has no rows.
func readRows(path string) (rows []row, lastWrite time.Time, err error) {
	for _, p := range []string{path, path + "-wal"} {
		if fi, err := os.Stat(p); err == nil && fi.ModTime().After(lastWrite) {
			lastWrite = fi.ModTime()
		}
	}
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil, lastWrite, nil
	}
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		return nil, lastWrite, err
	}
	defer db.Close()
	q, err := db.Query("SELECT id, name, offset, inode, rotated FROM in_tail_files")
	if err != nil {
		return nil, lastWrite, fmt.Errorf("%s: %w", path, err)
	}
	defer q.Close()
	for q.Next() {
		var r row
		var inode, rotated sql.NullInt64
		var offset sql.NullInt64
		if err := q.Scan(&r.id, &r.name, &offset, &inode, &rotated); err != nil {
			return nil, lastWrite, fmt.Errorf("%s: %w", path, err)
		}
		r.offset, r.inode, r.rotated = offset.Int64, uint64(inode.Int64), rotated.Int64 != 0
		rows = append(rows, r)
	}
	return rows, lastWrite, q.Err()
}

// forgetRows deletes rows whose inode now belongs to another file: tail, which knows files
// by inode alone, would resume that file at the old file's offset and skip its head.
func forgetRows(path string, ids []int64) error {
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		return err
	}
	defer db.Close()
	for _, id := range ids {
		if _, err := db.Exec("DELETE FROM in_tail_files WHERE id = ?", id); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	return nil
}
