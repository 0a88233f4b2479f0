package record

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"unsafe"

	"github.com/tinylib/msgp/msgp"
)

// FuzzDecoder checks that no input makes the decoder panic, read outside the chunk or
// allocate: every Record it returns must lie inside the input.
func FuzzDecoder(f *testing.F) {
	f.Add(v2(nil, et(1, 2), "seed"))
	f.Add(legacy(v2(nil, intTime(-1), "group"), floatTime(3.5), "legacy"))
	f.Add([]byte{0x92, 0x92, 0xd7, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0xdf, 0, 0, 0, 0, 0x80})
	if b, err := os.ReadFile(filepath.Join(fixtureDir, "kube-merged", "chunk-002.msgpack")); err == nil {
		f.Add(b[:4096])
	}
	f.Fuzz(func(t *testing.T, chunk []byte) {
		d := NewDecoder(chunk)
		base := uintptr(unsafe.Pointer(unsafe.SliceData(chunk)))
		within := func(b []byte) {
			p := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
			if len(b) > 0 && (p < base || p+uintptr(len(b)) > base+uintptr(len(chunk))) {
				t.Fatalf("a record slice of %d bytes lies outside the chunk", len(b))
			}
		}
		n := 0
		allocs := testing.AllocsPerRun(1, func() {
			d.Reset(chunk)
			for d.Next() {
				r := d.Record()
				within(r.Meta)
				within(r.Body)
				_, _ = r.Lookup("kubernetes", "pod_name")
				n++
			}
		})
		if allocs > 2 { // the error value of a corrupt chunk, nothing per record
			t.Fatalf("%v allocations decoding %d bytes", allocs, len(chunk))
		}
		sameAsSlowPath(t, chunk)
	})
}

// sameAsSlowPath holds the decoder's fast path to the slow one's answers: the same records,
// the same counts, the same error; and the log and stream it noted to a reading of the body.
func sameAsSlowPath(t *testing.T, chunk []byte) {
	t.Helper()
	fast, slow := NewDecoder(chunk), NewDecoder(chunk)
	slow.slow = true
	for i := 0; ; i++ {
		fok, sok := fast.Next(), slow.Next()
		if fok != sok {
			t.Fatalf("record %d: fast path %v, slow path %v", i, fok, sok)
		}
		if !fok {
			break
		}
		f, s := fast.Record(), slow.Record()
		if f.Sec != s.Sec || f.Nsec != s.Nsec || !bytes.Equal(f.Meta, s.Meta) || (f.Meta == nil) != (s.Meta == nil) || !bytes.Equal(f.Body, s.Body) {
			t.Fatalf("record %d: fast path %+v, slow path %+v", i, f, s)
		}
		fl, fs := f.LogAndStream()
		sl, ss := s.LogAndStream()
		if !bytes.Equal(fl, sl) || !bytes.Equal(fs, ss) || (fl == nil) != (sl == nil) || (fs == nil) != (ss == nil) {
			t.Fatalf("record %d: log and stream %q %q noted, %q %q read", i, fl, fs, sl, ss)
		}
	}
	fn, ferr := fast.Skipped()
	sn, serr := slow.Skipped()
	if fn != sn || fmt.Sprint(ferr) != fmt.Sprint(serr) || fmt.Sprint(fast.Err()) != fmt.Sprint(slow.Err()) {
		t.Fatalf("fast path skipped %d (%v), err %v; slow path %d (%v), %v", fn, ferr, fast.Err(), sn, serr, slow.Err())
	}
}

// TestFastPathOnFixtures runs the comparison over every chunk Fluent Bit wrote.
func TestFastPathOnFixtures(t *testing.T) {
	sets, _ := filepath.Glob(filepath.Join(fixtureDir, "*", "*.msgpack"))
	if len(sets) == 0 {
		t.Fatalf("no chunks in %s", fixtureDir)
	}
	for _, name := range sets {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		sameAsSlowPath(t, b)
		// Cut short, as a corrupt chunk is.
		sameAsSlowPath(t, b[:len(b)*2/3])
	}
}

// FuzzObjectLen holds our skipper to msgp.Skip's answers.
func FuzzObjectLen(f *testing.F) {
	f.Add(v2(nil, et(1, 2), "seed"))
	f.Add([]byte{0xdf, 0, 0, 0, 1, 0xc7, 1, 5, 0, 0xc0})
	f.Add([]byte{0xdd, 0xff, 0xff, 0xff, 0xff, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := objectLen(b)
		rest, merr := msgp.Skip(b)
		if (err == nil) != (merr == nil) {
			t.Fatalf("objectLen err %v, msgp.Skip err %v", err, merr)
		}
		if err == nil && n != len(b)-len(rest) {
			t.Fatalf("objectLen %d, msgp.Skip %d", n, len(b)-len(rest))
		}
	})
}
