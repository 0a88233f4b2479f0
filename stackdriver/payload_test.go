package stackdriver

import (
	"strings"
	"testing"

	"cloud.google.com/go/logging/apiv2/loggingpb"
	"github.com/tinylib/msgp/msgp"
	"google.golang.org/protobuf/proto"

	"github.com/trailstack/trailstack/record"
	"github.com/trailstack/trailstack/testkit/fixture"
)

// A body encoded straight from msgpack is, once decoded, the Struct the converter builds,
// and spends the same budget; one with a key lift takes out is left to the converter.
func TestAppendBodyIsTheConvertersStruct(t *testing.T) {
	var bodies []record.Value
	for _, b := range fixture.Batches(t, "kube-merged", "kube-raw", "plain") {
		for _, r := range b.Records {
			bodies = append(bodies, record.Value(r.Body))
		}
	}
	for _, shape := range fixture.Shapes {
		b, _ := fixture.ShapeBatch(shape, 64<<10)
		for _, r := range b.Records {
			bodies = append(bodies, record.Value(r.Body))
		}
	}
	// Past maxDepth both ways: maps in maps, lists in lists.
	deep, deepList := map[string]any{"x": 1}, []any{1}
	for i := 0; i < 40; i++ {
		deep, deepList = map[string]any{"d": deep}, []any{deepList}
	}
	for _, body := range []map[string]any{
		{"time": "engine's", "stream": "stdout", "_p": "F", "msg": "x", "n": 1, "f": 2.5, "u": uint64(1 << 63), "b": false, "nil": nil},
		{"bad": "\xff\xfe utf8", "\xc3": []any{"\xff", 1, []any{}}, "": map[string]any{}},
		{"nan": []any{float32(1.5)}, "big": strings.Repeat("é", 300)},
		deep,
		{"l": deepList},
		{"message": "kept", "level": "info"},
		{"severity": "ERROR", "msg": "lifted: the Struct's path"},
		{"logging.googleapis.com/trace": "abc", "msg": "lifted too"},
	} {
		b, _ := msgp.AppendIntf(nil, body)
		bodies = append(bodies, record.Value(b))
	}
	two := msgp.AppendMapHeader(nil, 3)
	for _, kv := range [][2]string{{"stream", "stdout"}, {"a", "first"}, {"a", "second"}} {
		two = msgp.AppendString(msgp.AppendString(two, kv[0]), kv[1])
	}
	bodies = append(bodies, two)

	var fast, slow int
	for i, body := range bodies {
		fc := converter{budget: maxFlushValues}
		raw, ok := fc.appendBody(nil, body)
		sc := converter{budget: maxFlushValues}
		want := sc.toStruct(body, true)
		if !ok {
			slow++
			if len(raw) != 0 || fc.budget != maxFlushValues {
				t.Fatalf("body %d: declined, but wrote %d bytes and spent %d values", i, len(raw), maxFlushValues-fc.budget)
			}
			continue
		}
		fast++
		var e loggingpb.LogEntry
		if err := proto.Unmarshal(raw, &e); err != nil {
			t.Fatalf("body %d: %v", i, err)
		}
		if !proto.Equal(e.GetJsonPayload(), want) || fc.budget != sc.budget || fc.tooDeep != sc.tooDeep {
			t.Fatalf("body %d: %v (budget %d, deep %d), want %v (budget %d, deep %d)", i, e.GetJsonPayload(), fc.budget, fc.tooDeep, want, sc.budget, sc.tooDeep)
		}
	}
	if fast < 100 || slow < 1 {
		t.Fatalf("%d bodies encoded directly, %d left to the converter: the cases miss a path", fast, slow)
	}
}

// FuzzAppendBody: whatever bytes a body holds, the direct encoding does not panic and, when
// it takes the body, decodes to the converter's Struct.
func FuzzAppendBody(f *testing.F) {
	seed, _ := msgp.AppendIntf(nil, map[string]any{"a": []any{1, "x", map[string]any{"b": true}}, "n": nil})
	f.Add(seed)
	f.Fuzz(func(t *testing.T, b []byte) {
		fc := converter{budget: 1000}
		raw, ok := fc.appendBody(nil, record.Value(b))
		if !ok {
			return
		}
		sc := converter{budget: 1000}
		want := sc.toStruct(record.Value(b), true)
		var e loggingpb.LogEntry
		if err := proto.Unmarshal(raw, &e); err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(e.GetJsonPayload(), want) {
			t.Fatalf("%v, want %v", e.GetJsonPayload(), want)
		}
	})
}
