package record

import (
	"errors"
	"fmt"
	"math"
	"testing"

	"github.com/tinylib/msgp/msgp"
)

func eventTime(b []byte, sec, nsec uint32) []byte {
	return append(b, 0xd7, 0, byte(sec>>24), byte(sec>>16), byte(sec>>8), byte(sec),
		byte(nsec>>24), byte(nsec>>16), byte(nsec>>8), byte(nsec))
}

func body(b []byte, log string) []byte {
	b = msgp.AppendMapHeader(b, 1)
	b = msgp.AppendString(b, "log")
	return msgp.AppendString(b, log)
}

// v2 appends [[time, {}], {"log": log}] with the time written by tm.
func v2(b []byte, tm func([]byte) []byte, log string) []byte {
	b = msgp.AppendArrayHeader(b, 2)
	b = msgp.AppendArrayHeader(b, 2)
	b = tm(b)
	b = msgp.AppendMapHeader(b, 0)
	return body(b, log)
}

func legacy(b []byte, tm func([]byte) []byte, log string) []byte {
	b = msgp.AppendArrayHeader(b, 2)
	b = tm(b)
	return body(b, log)
}

func et(sec, nsec uint32) func([]byte) []byte {
	return func(b []byte) []byte { return eventTime(b, sec, nsec) }
}
func intTime(v int64) func([]byte) []byte {
	return func(b []byte) []byte { return msgp.AppendInt64(b, v) }
}
func floatTime(v float64) func([]byte) []byte {
	return func(b []byte) []byte { return msgp.AppendFloat64(b, v) }
}

type got struct {
	sec, nsec int64
	log       string
}

func decode(t *testing.T, chunk []byte) ([]got, *Decoder) {
	t.Helper()
	var out []got
	d := NewDecoder(chunk)
	for d.Next() {
		r := d.Record()
		v, _ := r.Lookup("log")
		b, _ := v.Bytes()
		out = append(out, got{r.Sec, r.Nsec, string(b)})
	}
	return out, d
}

func TestForms(t *testing.T) {
	var c []byte
	c = v2(c, et(1700000000, 123456789), "eventtime")
	c = legacy(c, et(1700000001, 5), "legacy")
	c = v2(c, intTime(1700000002), "int")
	c = legacy(c, intTime(1700000003), "legacy-int")
	c = v2(c, floatTime(1700000004.25), "float")
	c = legacy(c, func(b []byte) []byte { return msgp.AppendFloat32(b, 1024.5) }, "float32")
	// ext8 with length 8 is an EventTime too.
	c = v2(c, func(b []byte) []byte { return append(b, 0xc7, 8, 0, 0, 0, 0, 9, 0, 0, 0, 1) }, "ext8")
	// bin body value and every map width for the metadata.
	c = msgp.AppendArrayHeader(c, 2)
	c = msgp.AppendArrayHeader(c, 2)
	c = eventTime(c, 7, 0)
	c = append(c, 0xde, 0, 1) // map16 metadata
	c = msgp.AppendString(c, "k")
	c = msgp.AppendString(c, "v")
	c = append(c, 0xdf, 0, 0, 0, 1) // map32 body
	c = msgp.AppendBytes(c, []byte("log"))
	c = msgp.AppendBytes(c, []byte("bin"))

	recs, d := decode(t, c)
	want := []got{
		{1700000000, 123456789, "eventtime"},
		{1700000001, 5, "legacy"},
		{1700000002, 0, "int"},
		{1700000003, 0, "legacy-int"},
		{1700000004, 250000000, "float"},
		{1024, 500000000, "float32"},
		{9, 1, "ext8"},
		{7, 0, "bin"},
	}
	if d.Err() != nil {
		t.Fatal(d.Err())
	}
	if len(recs) != len(want) {
		t.Fatalf("got %d records %v, want %d", len(recs), recs, len(want))
	}
	for i := range want {
		if recs[i] != want[i] {
			t.Errorf("record %d = %+v, want %+v", i, recs[i], want[i])
		}
	}
}

func TestGroupMarkersAreSkipped(t *testing.T) {
	var c []byte
	c = v2(c, intTime(groupStart), "group start")
	c = v2(c, et(1, 0), "a")
	c = v2(c, et(2, 0), "b")
	c = v2(c, intTime(groupEnd), "group end")
	recs, d := decode(t, c)
	if d.Err() != nil || len(recs) != 2 || recs[0].log != "a" || recs[1].log != "b" {
		t.Fatalf("got %v, %v", recs, d.Err())
	}
	if n, _ := d.Skipped(); n != 0 {
		t.Errorf("group markers counted as skipped: %d", n)
	}
}

func TestInvalidEventsAreSkippedNotFatal(t *testing.T) {
	var c []byte
	c = v2(c, et(1, 0), "before")
	c = msgp.AppendString(c, "not an event")
	c = msgp.AppendArrayHeader(c, 2) // body is not a map
	c = eventTime(c, 1, 0)
	c = msgp.AppendString(c, "x")
	c = v2(c, intTime(-5), "negative time")
	c = v2(c, floatTime(math.NaN()), "nan time")
	c = v2(c, func(b []byte) []byte { return append(b, 0xd7, 1, 0, 0, 0, 0, 0, 0, 0, 0) }, "ext type 1")
	c = v2(c, func(b []byte) []byte { return msgp.AppendString(b, "yesterday") }, "string time")
	c = v2(c, et(2, 0), "after")
	recs, d := decode(t, c)
	if d.Err() != nil {
		t.Fatal(d.Err())
	}
	if len(recs) != 2 || recs[0].log != "before" || recs[1].log != "after" {
		t.Fatalf("got %v", recs)
	}
	n, first := d.Skipped()
	if n != 6 || first == nil {
		t.Fatalf("skipped %d (%v), want 6", n, first)
	}
}

func TestTruncatedChunkIsAnError(t *testing.T) {
	var c []byte
	c = v2(c, et(1, 0), "one")
	c = v2(c, et(2, 0), "two")
	first := len(v2(nil, et(1, 0), "one"))
	for cut := first + 1; cut < len(c); cut++ {
		recs, d := decode(t, c[:cut])
		var ce *CorruptError
		if !errors.As(d.Err(), &ce) {
			t.Fatalf("cut at %d: err = %v, want a CorruptError", cut, d.Err())
		}
		if len(recs) != 1 || ce.Offset != first || ce.Records != 1 || ce.Size != cut {
			t.Fatalf("cut at %d: %d records, error %v", cut, len(recs), ce)
		}
	}
}

func TestCorruptChunkIsAnError(t *testing.T) {
	c := v2(nil, et(1, 0), "one")
	c = append(c, 0xc1) // never used in msgpack
	c = v2(c, et(2, 0), "lost")
	recs, d := decode(t, c)
	if len(recs) != 1 || d.Err() == nil {
		t.Fatalf("got %v, %v", recs, d.Err())
	}
	// A map header that claims far more entries than there are bytes.
	recs, d = decode(t, []byte{0x92, 0xd7, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0xdf, 0xff, 0xff, 0xff, 0xff, 0xa1, 'k'})
	if len(recs) != 0 || d.Err() == nil {
		t.Fatalf("got %v, %v", recs, d.Err())
	}
}

func TestEmptyChunk(t *testing.T) {
	recs, d := decode(t, nil)
	if len(recs) != 0 || d.Err() != nil {
		t.Fatalf("got %v, %v", recs, d.Err())
	}
}

func TestRangeAndNonStringKeys(t *testing.T) {
	var m []byte
	m = msgp.AppendMapHeader(m, 3)
	m = msgp.AppendInt(m, 1)
	m = msgp.AppendString(m, "int key")
	m = msgp.AppendString(m, "a")
	m = msgp.AppendInt(m, 42)
	m = msgp.AppendString(m, "b")
	m = msgp.AppendMapHeader(m, 0)
	var keys []string
	if err := Value(m).Range(func(k []byte, v Value) bool {
		keys = append(keys, string(k)+":"+v.Type().String())
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if len(keys) != 3 || keys[0] != ":str" || keys[1] != "a:int" || keys[2] != "b:map" {
		t.Fatalf("keys = %v", keys)
	}
	if _, ok := Value(m).Lookup("a", "deeper"); ok {
		t.Error("looked up into an int")
	}
	if err := Value(m[:len(m)-1]).Range(func([]byte, Value) bool { return true }); err == nil {
		t.Error("Range over a truncated map gave no error")
	}
}

func TestFileOffset(t *testing.T) {
	var chunk []byte
	for i, withOffset := range []bool{true, false} {
		chunk = msgp.AppendArrayHeader(chunk, 2)
		chunk = msgp.AppendInt64(chunk, 1796000000)
		n := uint32(2)
		if withOffset {
			n = 3
		}
		chunk = msgp.AppendMapHeader(chunk, n)
		chunk = msgp.AppendString(chunk, "log")
		chunk = msgp.AppendString(chunk, fmt.Sprint("line ", i))
		if withOffset {
			chunk = msgp.AppendString(chunk, OffsetKey)
			chunk = msgp.AppendInt64(chunk, 4242)
		}
		chunk = msgp.AppendString(chunk, "kubernetes")
		chunk = msgp.AppendMapHeader(chunk, 1)
		chunk = msgp.AppendString(chunk, "pod_name")
		chunk = msgp.AppendString(chunk, "api-1")
	}
	var d Decoder
	d.Reset(chunk)
	var got []string
	for d.Next() {
		r := d.Record()
		off, ok := r.FileOffset()
		// The same read from a copy of the body (no longer the one the decoder indexed).
		c := *r
		c.Body = append([]byte(nil), r.Body...)
		off2, ok2 := c.FileOffset()
		got = append(got, fmt.Sprint(off, ok, off2, ok2))
	}
	if want := []string{"4242 true 4242 true", "0 false 0 false"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("offsets %v, want %v", got, want)
	}
}
