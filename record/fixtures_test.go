package record

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// fixtureDir holds real chunks that Fluent Bit 5.1.1 passed to a Go plugin (its README).
// Not through testkit/fixture, which imports this package.
const fixtureDir = "../testdata/fluent-bit-5.1.1"

func readFixture(tb testing.TB, set, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(fixtureDir, set, name))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func decodeAll(t *testing.T, chunk []byte) []Record {
	t.Helper()
	var out []Record
	d := NewDecoder(chunk)
	for d.Next() {
		out = append(out, *d.Record())
	}
	if err := d.Err(); err != nil {
		t.Fatalf("decode: %v", err)
	}
	if n, err := d.Skipped(); n != 0 {
		t.Fatalf("skipped %d events: %v", n, err)
	}
	return out
}

func TestFixtureCounts(t *testing.T) {
	want := map[string][]int{
		"kube-merged": {80, 60, 66},
		"kube-raw":    {80, 60, 66},
		"plain":       {83, 60, 66},
	}
	for set, counts := range want {
		for i, n := range counts {
			name := "chunk-00" + strconv.Itoa(i+1) + ".msgpack"
			if got := len(decodeAll(t, readFixture(t, set, name))); got != n {
				t.Errorf("%s/%s: %d records, want %d", set, name, got, n)
			}
		}
	}
}

func TestFixtureMergedValues(t *testing.T) {
	recs := decodeAll(t, readFixture(t, "kube-merged", "chunk-001.msgpack"))
	r := &recs[0]
	if r.Sec != 1795694400 || r.Nsec != 4110123 {
		t.Errorf("time = %d.%09d", r.Sec, r.Nsec)
	}
	if !bytes.Equal(r.Meta, []byte{0xdf, 0, 0, 0, 0}) {
		t.Errorf("meta = %x, want an empty map32", r.Meta)
	}
	for _, c := range []struct {
		path []string
		want string
	}{
		{[]string{"stream"}, "stdout"},
		{[]string{"severity"}, "INFO"},
		{[]string{"message"}, "handled order 0"},
		{[]string{"httpRequest", "requestUrl"}, "/orders/0"},
		{[]string{"logging.googleapis.com/labels", "tenant"}, "acme"},
		{[]string{"kubernetes", "pod_name"}, "api-5d9b8c7f6-abcde"},
		{[]string{"kubernetes", "namespace_name"}, "blog"},
		{[]string{"kubernetes", "container_name"}, "api"},
		{[]string{"kubernetes", "host"}, "gke-blog-cluster-default-pool-1a2b3c4d-xyz1"},
		{[]string{"kubernetes", "labels", "app"}, "api"},
	} {
		if got := text(r, c.path...); got != c.want {
			t.Errorf("%v = %q, want %q", c.path, got, c.want)
		}
	}
	if _, ok := r.Lookup("log"); ok {
		t.Error("merged record still has log")
	}
	if _, ok := r.Lookup("kubernetes", "nope"); ok {
		t.Error("found a key that is not there")
	}
	// The second record is the first line of the Java stack trace, on stderr.
	if got := text(&recs[1], "log"); got != `Exception in thread "main" java.lang.IllegalStateException: order 0 failed` {
		t.Errorf("log = %q", got)
	}
	// Raw invalid UTF-8 reaches us untouched; repairing it is the sinks' job.
	var sawInvalid bool
	for i := range recs {
		if v, ok := recs[i].Lookup("log"); ok {
			b, _ := v.Bytes()
			sawInvalid = sawInvalid || bytes.Contains(b, []byte("invalid utf8: \xff\xfe end"))
		}
	}
	if !sawInvalid {
		t.Error("did not find the invalid UTF-8 record")
	}
}

func TestFixtureRawKeepsLogString(t *testing.T) {
	recs := decodeAll(t, readFixture(t, "kube-raw", "chunk-001.msgpack"))
	if got := text(&recs[0], "log"); !bytes.HasPrefix([]byte(got), []byte(`{"severity"`)) {
		t.Errorf("log = %q, want the JSON line as a string", got)
	}
}

// text is the str or bin value at path, as a string: "" when there is none.
func text(r *Record, path ...string) string {
	v, _ := r.Lookup(path...)
	b, _ := v.Bytes()
	return string(b)
}
