package core

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/trailstack/trailstack/record"
)

// Fluent Bit's chunk files (chunkio, lib/chunkio/include/chunkio/cio_file_st.h in 5.1.1):
// 0xC1 0x00, a CRC32 of the content, the content's length at byte 10 (big endian), padding,
// the metadata's length at byte 22, then the metadata and the records. The engine's metadata
// (flb_input_chunk.h) starts with 0xF1 0x77, a type and a flags byte, then the tag, which
// ends at a NUL or at the metadata's end; older chunks hold the bare tag.
const (
	chunkHeader     = 24
	chunkMetaMagic0 = 0xF1
	chunkMetaMagic1 = 0x77
)

// bufferIndex is what Fluent Bit's buffer holds, by chunk file: the runs of records of each,
// read once as the engine writes them (a chunk grows until it is full, then only leaves).
type bufferIndex struct {
	dir     string
	chunks  map[string]*storedChunk // by path
	scratch []byte                  // a chunk's new bytes, kept from one to the next
}

type storedChunk struct {
	tag    string
	start  int64 // where its records start in the file
	parsed int   // bytes of its records read
	runs   []*storedRun
	seen   bool
}

// storedRun is a run of one file's records in a chunk: its first record's time, the first
// and last offsets and how many there are.
type storedRun struct {
	ino       uint64
	lo, hi    int64
	n         int
	explained int // of its records, those counted lost (an evicted chunk)
}

// update reads new and grown chunks and returns the runs of those that left the buffer.
func (b *bufferIndex) update(place func(tag string, r run) []placed) (gone map[string][]*storedRun, err error) {
	for _, c := range b.chunks {
		c.seen = false
	}
	err = filepath.WalkDir(b.dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed while the walk went
			}
			return err
		}
		if d.IsDir() || !strings.HasSuffix(path, ".flb") {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		c := b.chunks[path]
		if c == nil {
			head := make([]byte, chunkHeader+1<<16)
			n, _ := readAt(path, head, 0)
			tag, start, ok := chunkHead(head[:n])
			if !ok {
				return nil // not whole yet: the next pass
			}
			c = &storedChunk{tag: tag, start: start}
			b.chunks[path] = c
		}
		c.seen = true
		// Only what was written since: records are appended, and what follows them is the
		// file's zeroed allocation, where the reading stops.
		if fi.Size() > c.start+int64(c.parsed) {
			b.readNew(path, c, place)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	gone = map[string][]*storedRun{}
	for path, c := range b.chunks {
		if !c.seen {
			gone[c.tag] = append(gone[c.tag], c.runs...)
			delete(b.chunks, path)
		}
	}
	return gone, nil
}

// readBlock is how much of a chunk file is read at a time.
const readBlock = 256 << 10

// readNew reads a chunk's records written since the last pass, a block at a time into one
// buffer the index keeps, until the zeros after them.
func (b *bufferIndex) readNew(path string, c *storedChunk, place func(tag string, r run) []placed) {
	fh, err := os.Open(path)
	if err != nil {
		return
	}
	defer fh.Close()
	data := b.scratch[:0]
	for {
		if cap(data)-len(data) < readBlock {
			data = slices.Grow(data, readBlock)
		}
		n, err := fh.ReadAt(data[len(data):len(data)+readBlock], c.start+int64(c.parsed)+int64(len(data)))
		data = data[:len(data)+n]
		body := trimZeros(data)
		used := c.read(body, place)
		c.parsed += used
		data = data[:copy(data, data[used:])]
		// The end of the file, or of what was written: only zeros beyond the records.
		if err != nil || n < readBlock || len(bytes.TrimRight(data, "\x00")) < len(data) {
			break
		}
	}
	b.scratch = data[:0]
}

// read adds the runs of the whole records at the start of content, placed in their files,
// and returns their size.
func (c *storedChunk) read(content []byte, place func(tag string, r run) []placed) int {
	var dec record.Decoder
	dec.Reset(content)
	used := 0
	var r run
	flush := func() {
		for _, p := range place(c.tag, r) {
			c.runs = append(c.runs, &storedRun{ino: p.ino, lo: p.offs[0], hi: p.offs[len(p.offs)-1], n: len(p.offs)})
		}
		r = run{}
	}
	for dec.Next() {
		used = dec.Consumed()
		rec := dec.Record()
		off, ok := rec.FileOffset()
		if !ok {
			continue
		}
		if n := len(r.offs); n > 0 && off <= r.offs[n-1] {
			flush()
		}
		r.offs = append(r.offs, off)
		r.times = append(r.times, rec.Sec*1e9+rec.Nsec)
	}
	if len(r.offs) > 0 {
		flush()
	}
	return used
}

// holds reports whether a chunk in the buffer holds the record of file ino whose last line
// starts at off.
func (b *bufferIndex) holds(tag string, ino uint64, off int64) bool {
	for _, c := range b.chunks {
		if c.tag != tag {
			continue
		}
		for _, r := range c.runs {
			if r.ino == ino && r.lo <= off && off <= r.hi {
				return true
			}
		}
	}
	return false
}

// chunkHead reads a chunk file's header: its tag and where its records start.
func chunkHead(b []byte) (tag string, start int64, ok bool) {
	if len(b) < chunkHeader || b[0] != 0xC1 || b[1] != 0x00 {
		return "", 0, false
	}
	metaLen := int(binary.BigEndian.Uint16(b[22:24]))
	if chunkHeader+metaLen > len(b) {
		return "", 0, false
	}
	meta := b[chunkHeader : chunkHeader+metaLen]
	if len(meta) >= 4 && meta[0] == chunkMetaMagic0 && meta[1] == chunkMetaMagic1 {
		meta = meta[4:]
	}
	if i := bytes.IndexByte(meta, 0); i >= 0 {
		meta = meta[:i]
	}
	return string(meta), int64(chunkHeader + metaLen), true
}

// trimZeros cuts the zeroed allocation after a chunk's records (the length in the header is
// set only when the chunk is synced). A few zeros are kept: a record may end in one.
func trimZeros(b []byte) []byte {
	if n := len(bytes.TrimRight(b, "\x00")) + 16; n < len(b) {
		return b[:n]
	}
	return b
}

func readAt(path string, b []byte, off int64) (int, error) {
	fh, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer fh.Close()
	return fh.ReadAt(b, off)
}
