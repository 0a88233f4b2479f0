package core

import (
	"bytes"
	"encoding/binary"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkLedger is a flush's share of the ledger: a lookup, then a confirmation, of a chunk
// not seen before, from 8 goroutines at once (Fluent Bit's workers).
func BenchmarkLedger(b *testing.B) {
	l, err := OpenLedger(filepath.Join(b.TempDir(), "x.ledger"), 72*time.Hour, 1000000, NewLogger("bench", &bytes.Buffer{}))
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	b.SetParallelism(4)
	var n uint64
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			var id ChunkID
			binary.BigEndian.PutUint64(id[:], uint64(time.Now().UnixNano())^n)
			n++
			if l.Confirmed(id) {
				b.Fatal("confirmed before")
			}
			l.Confirm(id)
		}
	})
}
