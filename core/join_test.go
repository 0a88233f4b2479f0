package core

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/tinylib/msgp/msgp"
	"github.com/trailstack/trailstack/record"
)

// streamChunk lays out CRI records of one container: [stream, line] pairs, in order.
func streamChunk(lines ...[2]string) []byte {
	var bodies [][]byte
	for _, l := range lines {
		b := msgp.AppendMapHeader(nil, 4)
		for _, kv := range [][2]string{{"time", "2023-11-14T22:13:20Z"}, {"stream", l[0]}, {"_p", "F"}, {"log", l[1]}} {
			b = msgp.AppendString(b, kv[0])
			b = msgp.AppendString(b, kv[1])
		}
		bodies = append(bodies, b)
	}
	return chunkOfBodies(bodies...)
}

const fileTag = "kube.var.log.containers.api-1_blog_app-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.log"

// A trace on stderr, its lines interleaved with stdout's, arrives as one record in its first
// line's place, marked; stdout's lines, and the stderr line after the trace, stay their own.
func TestTracesJoinedPerStream(t *testing.T) {
	s := &fakeSink{}
	in, _ := newTestInstance(t, s, MapGetter{})
	c := streamChunk(
		[2]string{"stdout", "GET / 200"},
		[2]string{"stderr", "java.lang.IllegalStateException: boom"},
		[2]string{"stdout", "GET /cart 200"},
		[2]string{"stderr", "\tat com.example.A.f(A.java:1)"},
		[2]string{"stderr", "\tat com.example.A.main(A.java:9)"},
		[2]string{"stderr", "next error line"},
	)
	if st := in.Flush(c, fileTag); st != Delivered {
		t.Fatalf("status %v", st)
	}
	want := "GET / 200,java.lang.IllegalStateException: boom\n\tat com.example.A.f(A.java:1)\n\tat com.example.A.main(A.java:9),GET /cart 200,next error line"
	if got := strings.Join(s.logs, ","); got != want {
		t.Fatalf("arrived %q\nwant    %q", got, want)
	}
	if n := testutil.ToFloat64(in.metrics.TracesJoined); n != 1 {
		t.Errorf("traces joined %v", n)
	}
	if n := in.delivered.Load(); n != 6 {
		t.Errorf("delivered %d lines, want 6", n)
	}
	// Turned off, every line is its own record.
	s2 := &fakeSink{}
	off, _ := newTestInstance(t, s2, MapGetter{"exceptions": "none"})
	off.Flush(c, fileTag)
	if len(s2.logs) != 6 {
		t.Errorf("with exceptions none: %d records", len(s2.logs))
	}
	if _, err := newTestInstanceErr(MapGetter{"exceptions": "cobol"}); err == nil || !strings.Contains(err.Error(), `config key "exceptions"`) {
		t.Errorf("bad language: %v", err)
	}
}

func newTestInstanceErr(keys MapGetter) (*Instance, error) {
	fake := Kind{Name: "fake", Parse: func(*Parser) Config { return &fakeSink{} }}
	keys["sink"] = "fake"
	return newInstance("trailstack.0", keys, []Kind{fake}, NewLogger("trailstack.0", &strings.Builder{}))
}

// BenchmarkJoinNoTraces is what joining costs a chunk without traces (nearly all): ns/op
// per record.
func BenchmarkJoinNoTraces(b *testing.B) {
	var lines [][2]string
	for i := 0; i < 1000; i++ {
		lines = append(lines, [2]string{"stdout", `10.4.3.7 - - [27/Nov/2026:06:00:00 +0000] "GET /api/v1/items/17 HTTP/1.1" 200 1312 "-" "Mozilla/5.0" rt=0.012`})
	}
	c := streamChunk(lines...)
	in, _ := newTestInstanceErr(MapGetter{})
	var recs []record.Record
	d := record.NewDecoder(c)
	for d.Next() {
		recs = append(recs, *d.Record())
	}
	var s joinScratch
	for b.Loop() {
		if _, n := in.joiner.join(recs, fileTag, &s); n != 0 {
			b.Fatal("joined")
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(recs)), "ns/record")
}
