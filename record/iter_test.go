package record

import (
	"bytes"
	"strings"
	"testing"

	"github.com/tinylib/msgp/msgp"
)

// The iterators agree with msgp's own reader on every map of the captured chunks, whichever
// way a walk reads them: whole entries, a key then its value, a key then Rest and Advance,
// or some entries and then SkipRest.
func TestIteratorsAgreeWithMsgp(t *testing.T) {
	var maps []Value
	for _, set := range []string{"kube-merged", "kube-raw", "plain"} {
		for _, name := range []string{"chunk-001.msgpack", "chunk-002.msgpack", "chunk-003.msgpack"} {
			for _, r := range decodeAll(t, readFixture(t, set, name)) {
				maps = append(maps, Value(r.Body))
				if k, ok := r.Lookup("kubernetes"); ok {
					maps = append(maps, k)
				}
			}
		}
	}
	for _, m := range maps {
		type entry struct{ rawKey, val []byte }
		var want []entry
		n, b, err := msgp.ReadMapHeaderBytes(m)
		if err != nil {
			t.Fatal(err)
		}
		for i := uint32(0); i < n; i++ {
			k := b
			if _, b, err = msgp.ReadMapKeyZC(b); err != nil {
				t.Fatal(err)
			}
			v := b
			if b, err = msgp.Skip(b); err != nil {
				t.Fatal(err)
			}
			want = append(want, entry{k[:len(k)-len(v)], v[:len(v)-len(b)]})
		}
		it, _ := m.Iter()
		for i := 0; ; i++ {
			key, val, ok := it.Next()
			if !ok {
				if i != len(want) || it.Err() != nil || it.Offset() != len(m) {
					t.Fatalf("Next ended after %d of %d entries at %d of %d: %v", i, len(want), it.Offset(), len(m), it.Err())
				}
				break
			}
			if !bytes.Equal(it.RawKey(), want[i].rawKey) || !bytes.Equal(key, keyContents(want[i].rawKey)) || !bytes.Equal(val, want[i].val) {
				t.Fatalf("entry %d: %q %x, want %x %x", i, key, val, want[i].rawKey, want[i].val)
			}
		}
		for stop := 0; stop <= len(want); stop++ {
			it, _ := m.Iter()
			for i := 0; i < stop; i++ {
				if i%3 == 2 { // Entry: the value read with it, or left for Value
					key, val, ok := it.Entry()
					if !ok || !bytes.Equal(key, keyContents(want[i].rawKey)) || !bytes.Equal(it.RawKey(), want[i].rawKey) {
						t.Fatalf("entry %d: key %q", i, key)
					}
					if val == nil { // only what its first bytes do not measure
						switch typ := Value(it.Rest()).Type(); typ {
						case msgp.MapType, msgp.ArrayType, msgp.BinType, msgp.ExtensionType, msgp.StrType:
						default:
							t.Fatalf("entry %d: a %v left unread", i, typ)
						}
						val, _ = it.Value()
					}
					if !bytes.Equal(val, want[i].val) {
						t.Fatalf("entry %d: value %x", i, val)
					}
					continue
				}
				if _, ok := it.Key(); !ok {
					t.Fatal("key")
				}
				if i%2 == 0 {
					v, _ := it.Value()
					if !bytes.Equal(v, want[i].val) {
						t.Fatalf("entry %d: value %x", i, v)
					}
				} else {
					l, err := objectLen(it.Rest())
					if err != nil || !bytes.Equal(it.Rest()[:l], want[i].val) {
						t.Fatalf("entry %d: rest %v", i, err)
					}
					it.Advance(l)
				}
			}
			if it.Len() != len(want)-stop || !it.SkipRest() || it.Offset() != len(m) || it.Len() != 0 {
				t.Fatalf("after %d entries: SkipRest ends at %d of %d", stop, it.Offset(), len(m))
			}
		}
	}
}

func TestArrayIter(t *testing.T) {
	a := msgp.AppendArrayHeader(nil, 3)
	a = msgp.AppendString(a, "x")
	a = msgp.AppendMapHeader(a, 1)
	a = msgp.AppendString(a, "k")
	a = msgp.AppendInt(a, 300)
	a = msgp.AppendNil(a)
	it, err := Value(a).Elems()
	var got []msgp.Type
	for {
		v, ok := it.Next()
		if !ok {
			break
		}
		got = append(got, v.Type())
	}
	if err != nil || it.Err() != nil || len(got) != 3 || got[0] != msgp.StrType || got[1] != msgp.MapType || got[2] != msgp.NilType {
		t.Fatalf("%v %v %v", got, err, it.Err())
	}
	it, _ = Value(a[:len(a)-2]).Elems() // cut inside the map
	for {
		if _, ok := it.Next(); !ok {
			break
		}
	}
	if it.Err() == nil {
		t.Fatal("a cut array read to its end")
	}
}

// A map cut inside its second value: the first entry reads, then the walk ends with the
// error, and no byte of the broken value is ever read as a key.
func TestMapIterStopsAtTheFirstMalformedEntry(t *testing.T) {
	m := msgp.AppendMapHeader(nil, 3)
	m = msgp.AppendString(m, "a")
	m = msgp.AppendString(m, "x")
	m = msgp.AppendString(m, "b")
	m = msgp.AppendMapHeader(m, 1) // cut below, inside this map
	m = msgp.AppendString(m, "k")
	m = msgp.AppendString(m, "cut short")
	m = m[:len(m)-3]
	it, _ := Value(m).Iter()
	if k, v, ok := it.Next(); !ok || string(k) != "a" || !v.Equal("x") {
		t.Fatalf("first entry: %q %x %v", k, v, ok)
	}
	if _, _, ok := it.Next(); ok || it.Err() == nil || it.Len() != 0 {
		t.Fatalf("second entry read (%v), err %v, %d left", ok, it.Err(), it.Len())
	}
	if _, ok := it.Key(); ok {
		t.Fatal("a key read after the error")
	}
	if _, _, ok := it.Entry(); ok {
		t.Fatal("an entry read after the error")
	}
}

// Bytes reads the strings it reads inline as msgp reads them, whatever their length, and
// leaves what is not exactly one string to msgp.
func TestBytesAgreesWithMsgp(t *testing.T) {
	for n := 0; n < 300; n++ {
		s := strings.Repeat("x", n)
		for _, v := range []Value{msgp.AppendString(nil, s), msgp.AppendBytes(nil, []byte(s))} {
			for _, v := range []Value{v, v[:len(v)-1], append(v[:len(v):len(v)], 0xc0)} {
				got, ok := v.Bytes()
				var want []byte
				var err error
				if v.Type() == msgp.StrType {
					var ws string
					ws, _, err = msgp.ReadStringBytes(v)
					want = []byte(ws)
				} else {
					want, _, err = msgp.ReadBytesZC(v)
				}
				if ok != (err == nil) || (ok && string(got) != string(want)) {
					t.Fatalf("% x: %q %v, msgp %q %v", v, got, ok, want, err)
				}
			}
		}
	}
}
