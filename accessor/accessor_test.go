package accessor

import (
	"os"
	"testing"

	"github.com/tinylib/msgp/msgp"

	"github.com/trailstack/trailstack/internal/fixture"
	"github.com/trailstack/trailstack/record"
)

func TestExtractFindsNestedValuesInOnePass(t *testing.T) {
	b := fixture.Batch(t, fixture.Files(t, "kube-merged")[0])
	ex := NewExtractor()
	pod := ex.Add([]string{"kubernetes", "pod_name"})
	app := ex.Add([]string{"kubernetes", "labels", "app"})
	labels := ex.Add([]string{"kubernetes", "labels"})
	stream := ex.Add([]string{"stream"})
	missing := ex.Add([]string{"nope"})
	vals := make([]record.Value, ex.Slots())
	id := ParseTag(b.Tag)
	for i := range b.Records {
		r := &b.Records[i]
		ex.Extract(&id, record.Value(r.Body), vals)
		for slot, path := range map[int][]string{pod: {"kubernetes", "pod_name"}, app: {"kubernetes", "labels", "app"}, labels: {"kubernetes", "labels"}, stream: {"stream"}} {
			want, _ := r.Lookup(path...)
			if b, _ := record.Value(want).Bytes(); slot == pod {
				want = record.Value(msgp.AppendString(nil, string(b))) // the tag's, as the filter's
			}
			if string(vals[slot]) != string(want) || len(want) == 0 {
				t.Fatalf("record %d: %v = %x, want %x", i, path, vals[slot], want)
			}
		}
		if vals[missing] != nil {
			t.Fatalf("record %d: found a missing key", i)
		}
	}
}

func TestTemplates(t *testing.T) {
	os.Setenv("TS_TEST_NODE", "node-3")
	defer os.Unsetenv("TS_TEST_NODE")
	b := fixture.Batch(t, fixture.Files(t, "kube-merged")[1])
	r := &b.Records[0]
	for src, want := range map[string]string{
		"$kubernetes['namespace_name']/$kubernetes[\"container_name\"]": "monitoring/grafana",
		"$nope||${TS_TEST_NODE}":    "node-3",
		"${TS_UNSET_VAR}||fallback": "fallback",
		"$TAG[0]-${tag[3]}":         "kube-containers",
		"literal $ sign":            "literal $ sign",
		"$level":                    "info",
	} {
		ex := NewExtractor()
		tm, err := Compile(src, ex)
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		vals := make([]record.Value, ex.Slots())
		id := ParseTag(b.Tag)
		ex.Extract(&id, record.Value(r.Body), vals)
		got, ok := tm.Render(nil, vals, b.Tag)
		if !ok || string(got) != want {
			t.Errorf("%s = %q (%v), want %q", src, got, ok, want)
		}
	}
	for _, bad := range []string{"$x['unclosed", "${NOPE", "$TAG[x]", "$a[b]"} {
		if _, err := Compile(bad, NewExtractor()); err == nil {
			t.Errorf("%q compiled", bad)
		}
	}
}

func BenchmarkExtract20k(b *testing.B) {
	batch := fixture.Batch(b, fixture.Files(b, "kube-20k")[0])
	ex := NewExtractor()
	for _, p := range [][]string{{"log"}, {"stream"}, {"severity"}, {"level"}, {"kubernetes", "namespace_name"}, {"kubernetes", "pod_name"}, {"kubernetes", "container_name"}, {"kubernetes", "host"}, {"kubernetes", "labels"}} {
		ex.Add(p)
	}
	vals := make([]record.Value, ex.Slots())
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ex.Extract(nil, record.Value(batch.Records[i%len(batch.Records)].Body), vals)
	}
}

// FuzzExtract: whatever bytes it is given, the walk neither panics nor returns a value that
// lies outside them.
func FuzzExtract(f *testing.F) {
	f.Add([]byte{0x82, 0xa1, 'k', 0x81, 0xa1, 'a', 0x01, 0xa1, 'l', 0xa1, 'x'})
	f.Add([]byte{0xdf, 0, 0, 0, 1, 0xa1, 'k', 0xde, 0, 1, 0xa1, 'a', 0xd9, 3, 'a', 'b'})
	ex := NewExtractor()
	ex.Add([]string{"k", "a"})
	ex.Add([]string{"k"})
	ex.Add([]string{"l"})
	vals := make([]record.Value, ex.Slots())
	f.Fuzz(func(t *testing.T, b []byte) {
		ex.Extract(nil, record.Value(b), vals)
		for _, v := range vals {
			if len(v) > len(b) {
				t.Fatalf("a value of %d bytes from %d", len(v), len(b))
			}
		}
	})
}
