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
	letGo   bool // deleted by tail (letGoTable): no row will tell tail where to resume
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

// tail deletes the row of every file it saw rotated when it lets the file go: after
// Rotate_Wait, and at exit whether it read the file to its end or not (Fluent Bit 5.1.1's
// flb_tail_file_remove). A log the kubelet rotates in an agent's last seconds, after its
// inputs stopped reading, loses its row, and with it where tail stopped. A trigger in tail's
// own DB keeps each deleted row in letGoTable, so that the next start can hand the unread
// rest of such a file to tail (and one tail let go unread after Rotate_Wait).
const letGoTable = "trailstack_let_go"

// tailSchema is in_tail_files as Fluent Bit 5.1.1 creates it (plugins/in_tail/tail_sql.h),
// for a node's first start, so that the trigger is there from the first agent on.
const tailSchema = `CREATE TABLE IF NOT EXISTS in_tail_files (id INTEGER PRIMARY KEY, name TEXT NOT NULL, offset INTEGER, inode INTEGER, created INTEGER, rotated INTEGER DEFAULT 0, offset_marker INTEGER DEFAULT 0, offset_marker_size INTEGER DEFAULT 0)`

// keepLetGo creates the table and the trigger where they are not yet.
func keepLetGo(path string) error {
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		return err
	}
	defer db.Close()
	for _, stmt := range []string{
		tailSchema,
		`CREATE TABLE IF NOT EXISTS ` + letGoTable + ` (name TEXT, offset INTEGER, inode INTEGER, rotated INTEGER)`,
		`CREATE TRIGGER IF NOT EXISTS ` + letGoTable + ` AFTER DELETE ON in_tail_files BEGIN INSERT INTO ` + letGoTable + ` VALUES (old.name, old.offset, old.inode, old.rotated); END`,
	} {
		if _, err := db.Exec(stmt); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	return nil
}

// letGoRows reads the rows tail deleted since the last start, as rows of rotated files (the
// rows the launcher itself deleted are there too: their inode belongs to a newer file, which
// the rotated files' search never matches).
func letGoRows(path string) ([]row, error) {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		return nil, err
	}
	defer db.Close()
	q, err := db.Query("SELECT name, offset, inode, rotated FROM " + letGoTable)
	if err != nil {
		return nil, nil // no table yet: an agent before this launcher
	}
	defer q.Close()
	var rows []row
	for q.Next() {
		var r row
		var offset, inode, rotated sql.NullInt64
		if err := q.Scan(&r.name, &offset, &inode, &rotated); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		r.id, r.offset, r.inode, r.rotated, r.letGo = -1, offset.Int64, uint64(inode.Int64), rotated.Int64 != 0, true
		rows = append(rows, r)
	}
	return rows, q.Err()
}

// clearLetGo empties the table once its rows are handled.
func clearLetGo(path string) error {
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		return err
	}
	defer db.Close()
	_, err = db.Exec("DELETE FROM " + letGoTable)
	return err
}
