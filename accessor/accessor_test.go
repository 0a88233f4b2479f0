package accessor

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/tinylib/msgp/msgp"

	"github.com/trailstack/trailstack/core"
	"github.com/trailstack/trailstack/record"
	"github.com/trailstack/trailstack/testkit/fixture"
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
		ex.Extract(&id, record.Value(r.Body), vals, nil)
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
	env := func(name string) (string, bool) {
		v, ok := map[string]string{"TS_TEST_NODE": "node-3"}[name]
		return v, ok
	}
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
		tm, err := Compile(src, ex, env)
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		vals := make([]record.Value, ex.Slots())
		id := ParseTag(b.Tag)
		ex.Extract(&id, record.Value(r.Body), vals, nil)
		got, ok := tm.Render(nil, vals, b.Tag)
		if !ok || string(got) != want {
			t.Errorf("%s = %q (%v), want %q", src, got, ok, want)
		}
	}
	for _, bad := range []string{"$x['unclosed", "${NOPE", "$TAG[x]", "$a[b]"} {
		if _, err := Compile(bad, NewExtractor(), env); err == nil {
			t.Errorf("%q compiled", bad)
		}
	}
}

// The memo gives what the walk gives, record after record, whatever changes between them:
// the pod, the container, a label, a duplicate kubernetes map, none at all.
func TestMemoAgreesWithTheWalk(t *testing.T) {
	ex := NewExtractor()
	for _, p := range [][]string{{"log"}, {"stream"}, {"kubernetes", "labels"}, {"kubernetes", "labels", "app"}, {"kubernetes", "host"}, {"kubernetes", "ownerReferences"}, {"kubernetes", "docker_id"}, {"kubernetes", "nope"}} {
		ex.Add(p)
	}
	var recs []record.Value
	for _, shape := range fixture.Shapes {
		b, _ := fixture.ShapeBatch(shape, 64<<10)
		for _, r := range b.Records {
			recs = append(recs, record.Value(r.Body))
		}
	}
	kube := func(pod, app string) map[string]any {
		return map[string]any{"pod_name": pod, "namespace_name": "ns", "container_name": "c", "labels": map[string]any{"app": app}}
	}
	for _, body := range []map[string]any{
		{"log": "a", "kubernetes": kube("p", "x")},
		{"log": "b", "kubernetes": kube("p", "y")},
		{"log": "c", "kubernetes": "not a map"},
		{"log": "d", "kubernetes": kube("p", "y")},
		{"log": "e"},
		{"log": "f", "kubernetes": map[string]any{}},
	} {
		b, _ := msgp.AppendIntf(nil, body)
		recs = append(recs, record.Value(b))
	}
	// Two kubernetes maps in one record (an application's, then the filter's): the last counts.
	two := msgp.AppendMapHeader(nil, 2)
	for _, app := range []string{"app's", "filter's"} {
		two = msgp.AppendString(two, "kubernetes")
		two, _ = msgp.AppendIntf(two, kube("p", app))
	}
	recs = append(recs, two, two)
	id := ParseTag("kube.var.log.containers.p_ns_c-" + strings.Repeat("ab", 32) + ".log")
	want, got := make([]record.Value, ex.Slots()), make([]record.Value, ex.Slots())
	var memo Memo
	for pass := 0; pass < 2; pass++ {
		for i, r := range recs {
			for _, ident := range []*Identity{nil, &id} {
				ex.Extract(ident, r, want, nil)
				ex.Extract(ident, r, got, &memo)
				for slot := range want {
					if string(want[slot]) != string(got[slot]) {
						t.Fatalf("pass %d record %d slot %d: %x with the memo, %x without", pass, i, slot, got[slot], want[slot])
					}
				}
			}
		}
		slices.Reverse(recs)
	}
}

// A memo's stamp vouches only for equal kubernetes values: over the records of every shape
// and of two chunks of one container whose maps differ, taken in turn, with keys repeated and
// more entries than most bodies, the memo gives what a walk without one finds, and no stamp
// comes with two sets of values.
func TestMemoStampsVouchForTheirValues(t *testing.T) {
	ex := NewExtractor()
	for _, p := range [][]string{{"log"}, {"stream"}, {"kubernetes", "labels"}, {"kubernetes", "host"}, {"kubernetes", "docker_id"}, {"kubernetes", "pod_id"}} {
		ex.Add(p)
	}
	var chunks []*core.Batch
	for _, shape := range fixture.Shapes {
		b, _ := fixture.ShapeBatch(shape, 64<<10)
		chunks = append(chunks, b)
	}
	c := fixture.ShapeContainers("kube")[0]
	tag := "kube.var.log.containers." + c.File()
	for _, hosts := range [][]string{{"node-x", "node-x", "node-y", "node-x"}, {"node-y", "node-y", "node-x"}} {
		var recs []record.Record
		for i, host := range hosts {
			body, _ := msgp.AppendIntf(nil, map[string]any{"log": fmt.Sprint("line ", i), "kubernetes": map[string]any{
				"pod_name": c.Pod, "namespace_name": c.NS, "container_name": c.Name, "host": host,
				"labels": map[string]any{"app": "shop", "pod-template-hash": c.Hash},
			}})
			recs = append(recs, record.Record{Sec: int64(1e9 + i), Body: body})
		}
		chunks = append(chunks, fixture.Chunk(tag, recs))
	}
	// Bodies that repeat a key: the first log counts, the last kubernetes map; and one of
	// more entries than the decoder notes.
	kubeMap := func(app string) []byte {
		b, _ := msgp.AppendIntf(nil, map[string]any{"pod_name": c.Pod, "namespace_name": c.NS, "container_name": c.Name, "labels": map[string]any{"app": app, "pod-template-hash": c.Hash}})
		return b
	}
	var odd []record.Record
	for _, entries := range [][][2][]byte{
		{{msgp.AppendString(nil, "kubernetes"), kubeMap("app's")}, {msgp.AppendString(nil, "log"), msgp.AppendString(nil, "first")}, {msgp.AppendString(nil, "kubernetes"), kubeMap("filter's")}},
		{{msgp.AppendString(nil, "log"), msgp.AppendString(nil, "a")}, {msgp.AppendString(nil, "log"), msgp.AppendString(nil, "b")}, {msgp.AppendString(nil, "kubernetes"), msgp.AppendString(nil, "not a map")}},
		{{msgp.AppendString(nil, "kubernetes"), kubeMap("x")}, {msgp.AppendString(nil, "kubernetes"), msgp.AppendString(nil, "then not a map")}},
		{{msgp.AppendInt(nil, 7), msgp.AppendString(nil, "an int key")}, {msgp.AppendBytes(nil, []byte("log")), msgp.AppendString(nil, "a bin key")}},
	} {
		body := msgp.AppendMapHeader(nil, uint32(len(entries)))
		for _, e := range entries {
			body = append(append(body, e[0]...), e[1]...)
		}
		odd = append(odd, record.Record{Sec: 1e9, Body: body})
	}
	many := map[string]any{"kubernetes": map[string]any{"pod_name": c.Pod, "namespace_name": c.NS, "container_name": c.Name, "host": "node-z"}}
	for i := range 14 {
		many[fmt.Sprint("k", i)] = i
	}
	body, _ := msgp.AppendIntf(nil, many)
	odd = append(odd, record.Record{Sec: 1e9, Body: body})
	chunks = append(chunks, fixture.Chunk(tag, odd))
	want, got := make([]record.Value, ex.Slots()), make([]record.Value, ex.Slots())
	var memo Memo
	type key struct {
		chunk int // a stamp is the memo's word for one Identity
		stamp Stamp
	}
	stamps := map[key][]string{} // a stamp's kubernetes values, as first seen
	for n, more := 0, true; more; n++ {
		more = false
		for i, b := range chunks {
			if n >= len(b.Records) {
				continue
			}
			more = true
			r, id := &b.Records[n], ParseTag(b.Tag)
			ex.Extract(&id, record.Value(r.Body), want, nil)
			stamp := ex.Extract(&id, record.Value(r.Body), got, &memo)
			var kube []string
			for slot := range want {
				if string(want[slot]) != string(got[slot]) {
					t.Fatalf("chunk %d record %d slot %d: %x with the memo, %x without", i, n, slot, got[slot], want[slot])
				}
				if ex.InKube(slot) {
					kube = append(kube, string(got[slot]))
				}
			}
			if stamp == 0 {
				continue
			}
			if seen, ok := stamps[key{i, stamp}]; !ok {
				stamps[key{i, stamp}] = kube
			} else if !slices.Equal(seen, kube) {
				t.Fatalf("chunk %d record %d: stamp %x vouches for %q and %q", i, n, stamp, seen, kube)
			}
		}
	}
	if len(stamps) < 6 {
		t.Fatalf("only %d stamps", len(stamps))
	}
}

// BenchmarkExtractShapes: the same wanted values as BenchmarkExtract20k, in each shape's
// records, with and without the memo.
func BenchmarkExtractShapes(b *testing.B) {
	ex := NewExtractor()
	for _, p := range [][]string{{"log"}, {"stream"}, {"severity"}, {"level"}, {"kubernetes", "host"}, {"kubernetes", "labels"}, {"kubernetes", "ownerReferences"}} {
		ex.Add(p)
	}
	vals := make([]record.Value, ex.Slots())
	for _, shape := range fixture.Shapes {
		batch, _ := fixture.ShapeBatch(shape, 2<<20)
		id := ParseTag(batch.Tag)
		for _, withMemo := range []bool{false, true} {
			b.Run(fmt.Sprintf("%s/memo=%v", shape, withMemo), func(b *testing.B) {
				var memo *Memo
				if withMemo {
					memo = &Memo{}
				}
				b.ReportAllocs()
				for i := 0; i < b.N; i++ {
					ex.Extract(&id, record.Value(batch.Records[i%len(batch.Records)].Body), vals, memo)
				}
			})
		}
	}
}

func BenchmarkExtract20k(b *testing.B) {
	batch := fixture.Batch(b, fixture.BenchSet(b, "kube-20k")[0])
	ex := NewExtractor()
	for _, p := range [][]string{{"log"}, {"stream"}, {"severity"}, {"level"}, {"kubernetes", "namespace_name"}, {"kubernetes", "pod_name"}, {"kubernetes", "container_name"}, {"kubernetes", "host"}, {"kubernetes", "labels"}} {
		ex.Add(p)
	}
	vals := make([]record.Value, ex.Slots())
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ex.Extract(nil, record.Value(batch.Records[i%len(batch.Records)].Body), vals, nil)
	}
}

// FuzzExtract: whatever bytes it is given, the walk neither panics nor returns a value that
// lies outside them.
func FuzzExtract(f *testing.F) {
	f.Add([]byte{0x82, 0xa1, 'k', 0x81, 0xa1, 'a', 0x01, 0xa1, 'l', 0xa1, 'x'})
	f.Add([]byte{0xdf, 0, 0, 0, 1, 0xa1, 'k', 0xde, 0, 1, 0xa1, 'a', 0xd9, 3, 'a', 'b'})
	seed, _ := msgp.AppendIntf(nil, map[string]any{"kubernetes": map[string]any{"pod_name": "p", "labels": map[string]any{"a": 1}}, "k": map[string]any{"a": 1}})
	f.Add(seed)
	// The tag's own container, so that the memo's stamp is in play.
	for _, app := range []int{1, 2} {
		seed, _ = msgp.AppendIntf(nil, map[string]any{"kubernetes": map[string]any{"pod_name": "p", "namespace_name": "ns", "container_name": "c", "labels": map[string]any{"a": app}}})
		f.Add(seed)
	}
	ex := NewExtractor()
	ex.Add([]string{"kubernetes", "labels"})
	ex.Add([]string{"k", "a"})
	ex.Add([]string{"k"})
	ex.Add([]string{"l"})
	vals := make([]record.Value, ex.Slots())
	memoVals := make([]record.Value, ex.Slots())
	var memo Memo // kept across inputs: a stale memo must never leak into another body
	// Two containers' tags, taken in turn: a map's kept answer for one is not the other's.
	ids := []Identity{
		ParseTag("kube.var.log.containers.p_ns_c-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.log"),
		ParseTag("kube.var.log.containers.q_ns_c-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.log"),
		{},
	}
	turn := 0
	// What each stamp vouched for, under the first tag with a memo of its own: the same stamp
	// again must come with the same kubernetes values.
	var stampMemo Memo
	stampVals := make([]record.Value, ex.Slots())
	vouched := map[Stamp]string{}
	f.Fuzz(func(t *testing.T, b []byte) {
		turn++
		id := &ids[turn%len(ids)]
		ex.Extract(id, record.Value(b), vals, nil)
		for i, v := range vals {
			if id.OK && (i == ex.kubeNS || i == ex.kubePod || i == ex.kubeC) {
				continue // the tag's
			}
			if len(v) > len(b) {
				t.Fatalf("a value of %d bytes from %d", len(v), len(b))
			}
		}
		ex.Extract(id, record.Value(b), memoVals, &memo)
		for i := range vals {
			if string(vals[i]) != string(memoVals[i]) {
				t.Fatalf("slot %d: %x with the memo, %x without", i, memoVals[i], vals[i])
			}
		}
		stamp := ex.Extract(&ids[0], record.Value(b), stampVals, &stampMemo)
		var kube []byte
		for i, v := range stampVals {
			if ex.InKube(i) {
				kube = msgp.AppendBytes(kube, v) // length-prefixed, so values cannot run together
			}
		}
		if seen, ok := vouched[stamp]; ok && stamp != 0 && seen != string(kube) {
			t.Fatalf("stamp %x vouched for %x and now %x", stamp, seen, kube)
		}
		vouched[stamp] = string(kube)
	})
}
