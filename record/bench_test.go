package record

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/tinylib/msgp/msgp"
	"github.com/ugorji/go/codec"
)

func load20k(b *testing.B) ([][]byte, int) {
	var chunks [][]byte
	n := 0
	dir := os.Getenv("FIXTURES") // make bench passes its FIXTURES (fixture.BenchSet's rule)
	if dir == "" {
		dir = filepath.Join("..", "..", "shared", "fixtures", "fluent-bit-5.1.1")
	}
	for _, name := range []string{"chunk-001.msgpack", "chunk-002.msgpack"} {
		c, err := os.ReadFile(filepath.Join(dir, "kube-20k", name))
		if err != nil {
			b.Skipf("benchmark set kube-20k is not in %s (set FIXTURES): %v", dir, err)
		}
		chunks = append(chunks, c)
		d := NewDecoder(c)
		for d.Next() {
			n++
		}
	}
	return chunks, n
}

// BenchmarkDecode20k walks every record of two kube-20k chunks and reads the pod name and
// the log line, as a sink would. ns/op is per record.
func BenchmarkDecode20k(b *testing.B) {
	benchDecode(b, func(r *Record) {
		if _, ok := r.Lookup("kubernetes", "pod_name"); !ok {
			b.Fatal("no pod name")
		}
		if _, ok := r.Lookup("log"); !ok {
			b.Fatal("no log")
		}
	})
}

// benchDecode decodes two kube-20k chunks over and over, handing each record to each (nil:
// decoding alone).
func benchDecode(b *testing.B, each func(*Record)) {
	chunks, n := load20k(b)
	var d Decoder
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += n {
		for _, c := range chunks {
			d.Reset(c)
			for d.Next() {
				if each != nil {
					each(d.Record())
				}
			}
			if d.Err() != nil {
				b.Fatal(d.Err())
			}
		}
	}
}

type ugorjiTime struct{ sec uint32 }

func (ugorjiTime) WriteExt(any) []byte { panic("unused") }
func (ugorjiTime) ReadExt(dst any, b []byte) {
	t := dst.(*ugorjiTime)
	t.sec = uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}
func (ugorjiTime) ConvertExt(any) any { return nil }
func (ugorjiTime) UpdateExt(any, any) { panic("unused") }

// BenchmarkUgorjiDecode20k is the same walk with github.com/ugorji/go/codec, the way
// fluent-bit-go's own decoder uses it (generic decode of each event), for comparison.
func BenchmarkUgorjiDecode20k(b *testing.B) {
	chunks, n := load20k(b)
	h := new(codec.MsgpackHandle)
	h.RawToString = true
	if err := h.SetBytesExt(reflect.TypeOf(ugorjiTime{}), 0, ugorjiTime{}); err != nil {
		b.Fatal(err)
	}
	dec := codec.NewDecoderBytes(nil, h)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += n {
		for _, c := range chunks {
			dec.ResetBytes(c)
			for {
				var ev []any
				if err := dec.Decode(&ev); err != nil {
					break
				}
				body := ev[1].(map[any]any)
				k := body["kubernetes"].(map[any]any)
				if k["pod_name"] == nil || body["log"] == nil {
					b.Fatal("missing fields")
				}
			}
		}
	}
}

// BenchmarkNext20k is decoding alone: every event framed, its time read, its metadata and
// body located. ns/op is per record.
func BenchmarkNext20k(b *testing.B) { benchDecode(b, nil) }

// BenchmarkObjectLen and BenchmarkMsgpSkip measure the bodies of two kube-20k chunks with
// objectLen and with msgp.Skip, which it stands in for. ns/op is per record.
func BenchmarkObjectLen(b *testing.B) {
	benchSkip(b, func(v []byte) bool { _, err := objectLen(v); return err == nil })
}
func BenchmarkMsgpSkip(b *testing.B) {
	benchSkip(b, func(v []byte) bool { _, err := msgp.Skip(v); return err == nil })
}

func benchSkip(b *testing.B, skip func([]byte) bool) {
	chunks, n := load20k(b)
	var bodies [][]byte
	for _, c := range chunks {
		d := NewDecoder(c)
		for d.Next() {
			bodies = append(bodies, d.Record().Body)
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i += n {
		for _, body := range bodies {
			if !skip(body) {
				b.Fatal("not one object")
			}
		}
	}
}
