package core

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tinylib/msgp/msgp"
)

// chunkFile writes a chunk file as chunkio lays it out, with the engine's metadata and the
// records [time, {log, trailstack_offset}], and zeros after them as a file's allocation has.
func chunkFile(t *testing.T, path, tag string, times, offs []int64) {
	t.Helper()
	meta := append([]byte{chunkMetaMagic0, chunkMetaMagic1, 0, 0}, tag...)
	var recs []byte
	for i := range offs {
		recs = msgp.AppendArrayHeader(recs, 2)
		recs = msgp.AppendInt64(recs, times[i]/1e9)
		recs = msgp.AppendMapHeader(recs, 2)
		recs = msgp.AppendString(recs, "log")
		recs = msgp.AppendString(recs, "line")
		recs = msgp.AppendString(recs, "trailstack_offset")
		recs = msgp.AppendInt64(recs, offs[i])
	}
	b := make([]byte, chunkHeader)
	b[0], b[1] = 0xC1, 0x00
	binary.BigEndian.PutUint32(b[10:], uint32(len(recs)))
	binary.BigEndian.PutUint16(b[22:], uint16(len(meta)))
	b = append(append(append(b, meta...), recs...), make([]byte, 4096)...)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestBufferIndexPlacesWhatItHoldsAndWhatLeft(t *testing.T) {
	start := time.Unix(1796000000, 0)
	// Whole seconds: the records' integer times are the lines' own.
	var log []byte
	var offs, times []int64
	for i := 0; i < 5; i++ {
		times = append(times, start.Add(time.Duration(i)*time.Second).UnixNano())
		offs = append(offs, int64(len(log)))
		log = append(log, []byte(time.Unix(0, times[i]).UTC().Format(time.RFC3339Nano)+" stdout F x\n")...)
	}
	dir, tag, _ := accountDir(t, log)
	a := NewAccountant(AccountConfig{Links: filepath.Join(dir, "containers"), Storage: filepath.Join(dir, "storage"),
		TagPrefix: "kube.var.log.containers.", MaxLine: 1 << 20, Grace: time.Second}, nil, NewLogger("test", os.Stderr), nil)
	defer a.Close()
	chunk := filepath.Join(dir, "storage", "tail.0", "1-1.flb")
	chunkFile(t, chunk, tag, times[:3], offs[:3])
	gone, err := a.buffer.update(a.placeStored)
	if err != nil || len(gone) != 0 {
		t.Fatalf("update: %v, gone %v", err, gone)
	}
	c := a.buffer.chunks[chunk]
	if c == nil || c.tag != tag || len(c.runs) != 1 || c.runs[0].lo != offs[0] || c.runs[0].hi != offs[2] || c.runs[0].n != 3 {
		t.Fatalf("indexed %+v", c)
	}
	ino := c.runs[0].ino
	if !a.buffer.holds(tag, ino, offs[1]) || a.buffer.holds(tag, ino, offs[3]) {
		t.Error("holds is wrong")
	}
	if err := os.Remove(chunk); err != nil {
		t.Fatal(err)
	}
	gone, _ = a.buffer.update(a.placeStored)
	if r := gone[tag]; len(r) != 1 || r[0].n != 3 || len(a.buffer.chunks) != 0 {
		t.Fatalf("gone %v, chunks %v", gone, a.buffer.chunks)
	}
}
