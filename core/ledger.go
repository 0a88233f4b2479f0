package core

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// A ledger is what one destination confirmed, kept on the node across restarts: the chunks
// it delivered, each named by its bytes. Fluent Bit keeps a chunk with two routes until both
// outputs are done with it, and a new engine routes a stored chunk to every matching output
// again, so a restart while one destination is behind replays to the other what it already
// confirmed. The chunk's bytes are the same on every replay (the engine locks a chunk when
// it first hands it to an output, and loads it unchanged from the storage folder), so they
// name it exactly: a replayed chunk is skipped as a whole, and a chunk never confirmed is
// never skipped. Forgetting (an old entry, a ledger lost or corrupt) only sends again.
//
// The store is bbolt, one file per output, behind a journal: Confirm appends the chunk's key
// to the journal (one write of 16 bytes, into the kernel's page cache) before the flush
// answers, so a killed process (an OOM kill, SIGKILL) forgets nothing, and every
// ledgerSyncEvery the keys confirmed meanwhile go into bbolt in one transaction, fsynced, and
// the journal they were in is removed. One bbolt transaction per flush cost about 180 µs of
// CPU; the journal's write costs a few. A node that crashes may forget the journal's last
// seconds, which costs duplicates. Every key the files ever held is a chunk the destination
// confirmed, so even a file a crash left torn cannot make an unconfirmed chunk look
// confirmed; what bbolt cannot read is set aside. Entries live in one bucket per window of
// time; the oldest window is dropped whole once it is older than the ledger's age or the
// ledger holds too many entries.
type Ledger struct {
	path string
	log  *Logger
	now  func() time.Time // injected where tests control time

	maxAge     time.Duration
	maxEntries int
	window     time.Duration // one bucket's span: maxAge/ledgerWindows

	mu         sync.Mutex // guards db, journal, pending, committing, aged and closed
	db         *bolt.DB   // nil while broken: only pending and committing are known
	journal    *os.File   // where Confirm appends each key before it returns
	pending    map[ChunkID]struct{}
	committing map[ChunkID]struct{} // being written to db; still in the previous journal
	aged       time.Time            // when windows were last dropped by age
	closed     bool

	entries atomic.Int64 // over every window

	// onSync, when set, is told the entries and the file's size after each sync (the
	// instance's series).
	onSync func(entries int, size int64)

	stop chan struct{}
	done chan struct{}
}

// ChunkID names a chunk by its tag and bytes: their 64-bit xxhash and the bytes' length.
type ChunkID [16]byte

// ChunkSum is the xxhash of a chunk's tag and bytes, which ChunkID and Cloud Logging's
// insertIds are made of: one pass over the chunk for both.
func ChunkSum(tag string, data []byte) uint64 {
	var h xxhash.Digest
	h.Reset()
	_, _ = h.WriteString(tag)
	_, _ = h.Write(data)
	return h.Sum64()
}

func chunkID(sum uint64, size int) ChunkID {
	var id ChunkID
	binary.BigEndian.PutUint64(id[:8], sum)
	binary.BigEndian.PutUint64(id[8:], uint64(size))
	return id
}

const (
	ledgerSyncEvery = 2 * time.Second
	// ledgerWindows is how many buckets the ledger's age is cut into: a lookup reads each.
	ledgerWindows = 24
	// ledgerOpenTimeout bounds the wait for the file's lock, which another process (an
	// old pod not yet gone) may hold.
	ledgerOpenTimeout = 2 * time.Second
)

// LedgerPath is the file of an output's ledger in dir, named by its sink and destination:
// what stays the same across restarts and upgrades, whatever the output's place in the file.
func LedgerPath(dir, sink, destination string) string {
	return filepath.Join(dir, fmt.Sprintf("%s-%016x.ledger", sink, xxhash.Sum64String(destination)))
}

// openLedgers are the ledger files this process has open: two outputs never share one.
var openLedgers sync.Map

// OpenLedger opens (or creates) the ledger at path. A file that cannot be read as a ledger is
// set aside, logged, and a new one started: its entries are never trusted.
func OpenLedger(path string, maxAge time.Duration, maxEntries int, log *Logger) (*Ledger, error) {
	if _, taken := openLedgers.LoadOrStore(path, true); taken {
		return nil, fmt.Errorf("%s is another output's ledger: two outputs to the same destination need their own ledger_dir", path)
	}
	l := &Ledger{path: path, log: log, now: time.Now, maxAge: maxAge, maxEntries: maxEntries,
		window: max(time.Second, maxAge/ledgerWindows), pending: map[ChunkID]struct{}{},
		stop: make(chan struct{}), done: make(chan struct{})}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		openLedgers.Delete(path)
		return nil, err
	}
	if err := l.open(""); err != nil {
		openLedgers.Delete(path)
		return nil, err
	}
	j, err := os.OpenFile(l.journalPath(0), os.O_CREATE|os.O_TRUNC|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		l.db.Close()
		openLedgers.Delete(path)
		return nil, err
	}
	l.journal = j
	go l.run()
	return l, nil
}

// journalPath is one of the two journals, which take turns: Confirm appends to one while the
// keys of the other go into bbolt.
func (l *Ledger) journalPath(n int) string { return l.path + ".journal" + strconv.Itoa(n) }

// open opens the file, setting aside one that is not a sound ledger, and puts into it the
// keys of every journal but current (the one Confirm appends to, "" at the start).
func (l *Ledger) open(current string) error {
	db, n, err := openBolt(l.path)
	if err != nil && !errors.Is(err, berrors.ErrTimeout) {
		aside := l.path + ".corrupt-" + strconv.FormatInt(l.now().Unix(), 10)
		l.log.Errorf("ledger %s cannot be trusted (%v): set aside as %s; a new one starts, and chunks it confirmed may be sent again", l.path, err, filepath.Base(aside))
		if rerr := os.Rename(l.path, aside); rerr != nil && !os.IsNotExist(rerr) {
			return fmt.Errorf("ledger %s: %v; setting it aside: %v", l.path, err, rerr)
		}
		db, n, err = openBolt(l.path)
	}
	if err != nil {
		return err
	}
	// The keys a process confirmed and had not committed when it stopped (killed, or its
	// last commit failed) are in its journals: into bbolt with them.
	var keys []ChunkID
	for i := 0; i < 2; i++ {
		if l.journalPath(i) == current {
			continue
		}
		b, err := os.ReadFile(l.journalPath(i))
		if err != nil {
			continue
		}
		for len(b) >= len(ChunkID{}) { // a torn last key is no key
			var id ChunkID
			copy(id[:], b)
			keys = append(keys, id)
			b = b[len(id):]
		}
	}
	if len(keys) > 0 {
		ids := make(map[ChunkID]struct{}, len(keys))
		for _, id := range keys {
			ids[id] = struct{}{}
		}
		added, err := l.commitTo(db, ids, l.now())
		if err == nil {
			err = db.Sync()
		}
		if err != nil {
			db.Close()
			return fmt.Errorf("ledger %s: its journal: %w", l.path, err)
		}
		n += added
	}
	for i := 0; i < 2; i++ {
		if l.journalPath(i) != current {
			_ = os.Remove(l.journalPath(i))
		}
	}
	// Commits are fsynced by sync(), after the keys they hold are in a journal.
	db.NoSync = true
	l.db = db
	l.entries.Store(int64(n))
	return nil
}

// openBolt opens a bbolt file and checks it whole (a few milliseconds for a million entries),
// returning the entries it holds.
func openBolt(path string) (db *bolt.DB, n int, err error) {
	defer func() {
		// bbolt panics on some corruptions it meets while reading.
		if r := recover(); r != nil {
			if db != nil {
				db.Close()
			}
			db, err = nil, fmt.Errorf("reading it: %v", r)
		}
	}()
	db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: ledgerOpenTimeout})
	if err != nil {
		return nil, 0, err
	}
	err = db.View(func(tx *bolt.Tx) error {
		for e := range tx.Check() {
			return e
		}
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			if len(name) != 8 {
				return fmt.Errorf("a bucket named %q is not a window", name)
			}
			return b.ForEach(func(k, v []byte) error {
				if len(k) != len(ChunkID{}) || len(v) != 0 {
					return fmt.Errorf("an entry of %d and %d bytes is not a chunk's", len(k), len(v))
				}
				n++
				return nil
			})
		})
	})
	if err != nil {
		db.Close()
		return nil, 0, err
	}
	return db, n, nil
}

// Confirmed tells whether the destination confirmed the chunk. A ledger that cannot be
// read says no: the chunk is sent again.
func (l *Ledger) Confirmed(id ChunkID) (yes bool) {
	l.mu.Lock()
	_, pending := l.pending[id]
	_, committing := l.committing[id]
	db := l.db
	l.mu.Unlock()
	if pending || committing {
		return true
	}
	if db == nil {
		return false
	}
	defer func() {
		if r := recover(); r != nil {
			l.broken(db, fmt.Errorf("reading it: %v", r))
			yes = false
		}
	}()
	_ = db.View(func(tx *bolt.Tx) error {
		c := tx.Cursor()
		for name, _ := c.First(); name != nil; name, _ = c.Next() {
			if b := tx.Bucket(name); b != nil && b.Get(id[:]) != nil {
				yes = true
				return nil
			}
		}
		return nil
	})
	return yes
}

// Confirm records that the destination confirmed the chunk: in the journal before it
// returns, in bbolt at the next sync.
func (l *Ledger) Confirm(id ChunkID) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	if _, ok := l.pending[id]; ok {
		return
	}
	l.pending[id] = struct{}{}
	l.entries.Add(1)
	if _, err := l.journal.Write(id[:]); err != nil {
		// Known until the next sync, and in bbolt after it; only a kill before then
		// forgets it.
		l.log.Warnf("ledger %s: its journal: %v", l.path, err)
	}
}

// commitTo puts ids into the window of now, in one transaction, and returns how many were new.
func (l *Ledger) commitTo(db *bolt.DB, ids map[ChunkID]struct{}, now time.Time) (added int, err error) {
	defer func() {
		// bbolt panics on some corruptions it meets while writing.
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	name := l.windowName(now)
	err = db.Update(func(tx *bolt.Tx) error {
		added = 0
		b, err := tx.CreateBucketIfNotExists(name[:])
		if err != nil {
			return err
		}
		// In key order: bbolt keeps a transaction's changes in nodes it splits only at
		// commit, and random keys into one node cost a copy each of all that follow.
		for _, id := range slices.SortedFunc(maps.Keys(ids), func(a, b ChunkID) int { return bytes.Compare(a[:], b[:]) }) {
			if b.Get(id[:]) == nil {
				if err := b.Put(id[:], nil); err != nil {
					return err
				}
				added++
			}
		}
		return nil
	})
	return added, err
}

func (l *Ledger) windowName(t time.Time) (name [8]byte) {
	binary.BigEndian.PutUint64(name[:], uint64(t.UnixNano()/int64(l.window)))
	return name
}

// Entries is how many chunks the ledger holds.
func (l *Ledger) Entries() int { return int(l.entries.Load()) }

// Size is the ledger file's size in bytes.
func (l *Ledger) Size() int64 {
	fi, err := os.Stat(l.path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

func (l *Ledger) run() {
	defer close(l.done)
	t := time.NewTicker(ledgerSyncEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			l.sync()
		case <-l.stop:
			l.sync()
			return
		}
	}
}

// sync commits the keys confirmed since the last sync into bbolt and fsyncs it, removing the
// journal they were in, and drops the windows past the ledger's age or count. A broken
// ledger starts again here, empty but for what is pending.
func (l *Ledger) sync() {
	l.mu.Lock()
	if l.db == nil && !l.closed {
		if err := l.open(l.journal.Name()); err != nil {
			l.log.Warnf("ledger %s: %v", l.path, err)
		}
	}
	db, now := l.db, l.now()
	age := l.entries.Load() > int64(l.maxEntries) || now.Sub(l.aged) >= time.Minute
	if db == nil || len(l.pending) == 0 && !age {
		l.mu.Unlock()
		return
	}
	if age {
		l.aged = now
	}
	// The other journal takes Confirm's keys while these go into bbolt.
	old := l.journal
	next := l.journalPath(0)
	if old.Name() == next {
		next = l.journalPath(1)
	}
	j, err := os.OpenFile(next, os.O_CREATE|os.O_TRUNC|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		l.mu.Unlock()
		l.log.Warnf("ledger %s: %v", l.path, err)
		return
	}
	l.journal = j
	l.committing, l.pending = l.pending, map[ChunkID]struct{}{}
	batch := l.committing
	l.mu.Unlock()

	added, err := l.commitTo(db, batch, now)
	dropped := 0
	if err == nil && age {
		dropped, err = l.dropWindows(db, now)
	}
	if err == nil {
		err = db.Sync()
	}
	l.mu.Lock()
	l.committing = nil
	l.mu.Unlock()
	if err != nil {
		// The keys stay in the old journal, which the next open reads again.
		_ = old.Close()
		l.broken(db, fmt.Errorf("writing it: %w", err))
		return
	}
	_ = old.Close()
	_ = os.Remove(old.Name())
	// Entries counted pending are in bbolt now, some of them already there.
	l.entries.Add(int64(added - len(batch) - dropped))
	if l.onSync != nil {
		l.onSync(l.Entries(), l.Size())
	}
}

// dropWindows drops whole windows, oldest first and never the current one, while they are
// older than the ledger's age or it holds more entries than its cap.
func (l *Ledger) dropWindows(db *bolt.DB, now time.Time) (dropped int, err error) {
	defer func() {
		// bbolt panics on some corruptions it meets while writing.
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	cur := l.windowName(now)
	oldest := uint64(now.Add(-l.maxAge).UnixNano() / int64(l.window))
	entries := int(l.entries.Load())
	err = db.Update(func(tx *bolt.Tx) error {
		dropped = 0
		c := tx.Cursor()
		for k, _ := c.First(); k != nil && string(k) != string(cur[:]); k, _ = c.First() {
			if binary.BigEndian.Uint64(k) >= oldest && entries-dropped <= l.maxEntries {
				break
			}
			n := tx.Bucket(k).Stats().KeyN
			if err := tx.DeleteBucket(k); err != nil {
				return err
			}
			dropped += n
		}
		return nil
	})
	return dropped, err
}

// broken closes a ledger that failed, if it is still the open one: until the next sync
// reopens it (setting aside a file that cannot be read), every chunk is sent.
func (l *Ledger) broken(db *bolt.DB, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.db != db || db == nil {
		return
	}
	l.log.Errorf("ledger %s: %v; chunks it confirmed may be sent again", l.path, err)
	_ = db.Close()
	l.db = nil
	l.entries.Store(0)
}

// Close commits what is pending and closes the files.
func (l *Ledger) Close() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.mu.Unlock()
	close(l.stop)
	<-l.done
	l.mu.Lock()
	l.closed = true
	if l.db != nil {
		_ = l.db.Close()
		l.db = nil
	}
	if l.journal != nil {
		_ = l.journal.Close()
		if len(l.pending) == 0 { // else the next open reads its keys again
			_ = os.Remove(l.journal.Name())
		}
	}
	l.mu.Unlock()
	openLedgers.Delete(l.path)
}
