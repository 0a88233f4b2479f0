package stackdriver

import (
	"fmt"
	"strings"
	"testing"

	"github.com/tinylib/msgp/msgp"
	"google.golang.org/protobuf/proto"

	"github.com/trailstack/trailstack/record"
	"github.com/trailstack/trailstack/testkit/fixture"
)

// A 1 MB line arrives whole, as entries within the API's limit marked as one split group,
// in order, their texts rebuilding it, each with its own insertId, the same on a retry; the
// record is not counted as cut. A large JSON payload goes as its JSON text, split the same way.
func TestLongRecordsGoAsSplitEntries(t *testing.T) {
	f := startFake(t)
	s := newSink(t, f, nil)
	var line strings.Builder
	for i := 0; line.Len() < 1<<20; i++ {
		fmt.Fprintf(&line, "part %d é ", i) // multi-byte runes, so cuts must respect UTF-8
	}
	body := msgp.AppendMapHeader(nil, 2)
	body = msgp.AppendString(body, "stream")
	body = msgp.AppendString(body, "stdout")
	body = msgp.AppendString(body, "log")
	body = msgp.AppendString(body, line.String())
	b := fixture.Chunk("app.x", []record.Record{{Sec: 1795694400, Body: body}})
	for try := 0; try < 2; try++ {
		res := s.Deliver(t.Context(), b)
		if res.Truncated != 0 {
			t.Fatalf("counted %d records cut", res.Truncated)
		}
	}
	got := f.entries()
	if len(got)%2 != 0 || len(got) < 8 {
		t.Fatalf("%d entries for two deliveries of a 1 MB line", len(got))
	}
	parts := got[:len(got)/2]
	var text strings.Builder
	ids := map[string]bool{}
	for k, e := range parts {
		sp := e.GetSplit()
		if sp.GetUid() != parts[0].GetSplit().GetUid() || sp.GetIndex() != int32(k) || sp.GetTotalSplits() != int32(len(parts)) {
			t.Fatalf("part %d: split %v", k, sp)
		}
		if n := proto.Size(e); n > maxEntryBytes {
			t.Fatalf("part %d is %d bytes", k, n)
		}
		if ids[e.InsertId] {
			t.Fatalf("insertId %s twice", e.InsertId)
		}
		ids[e.InsertId] = true
		if again := got[len(parts)+k]; again.InsertId != e.InsertId {
			t.Fatalf("a retry's part %d has insertId %s, was %s", k, again.InsertId, e.InsertId)
		}
		text.WriteString(e.GetTextPayload())
	}
	if text.String() != line.String() {
		t.Fatalf("the parts rebuild %d bytes of the %d", text.Len(), line.Len())
	}
}

// A merged JSON body larger than an entry goes as its JSON text, split, nothing cut.
func TestLargeJSONBodyGoesAsSplitText(t *testing.T) {
	f := startFake(t)
	s := newSink(t, f, nil)
	big := strings.Repeat("0123456789", 60_000)
	body := msgp.AppendMapHeader(nil, 3)
	body = msgp.AppendString(body, "stream")
	body = msgp.AppendString(body, "stdout")
	body = msgp.AppendString(body, "msg")
	body = msgp.AppendString(body, "snapshot")
	body = msgp.AppendString(body, "data")
	body = msgp.AppendString(body, big)
	deliver(t, s, fixture.Chunk("app.x", []record.Record{{Sec: 1795694400, Body: body}}))
	var text strings.Builder
	got := f.entries()
	for _, e := range got {
		text.WriteString(e.GetTextPayload())
	}
	if want := `{"msg":"snapshot","data":"` + big + `"}`; len(got) < 3 || text.String() != want {
		t.Fatalf("%d entries rebuilding %d bytes, want %d", len(got), text.Len(), len(want))
	}
}
