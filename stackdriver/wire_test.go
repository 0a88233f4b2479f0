package stackdriver

import (
	"context"
	"maps"
	"testing"
	"time"

	"cloud.google.com/go/logging/apiv2/loggingpb"
	"github.com/tinylib/msgp/msgp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/trailstack/trailstack/record"
	"github.com/trailstack/trailstack/testkit/fixture"
)

// wireDecoded is req as Cloud Logging reads it once wireRequest has encoded its entries.
func wireDecoded(t *testing.T, req *loggingpb.WriteLogEntriesRequest) *loggingpb.WriteLogEntriesRequest {
	t.Helper()
	w, err := wireRequest(req, nil)
	if err != nil {
		t.Fatal(err)
	}
	// As gRPC sends it: the blocks the codec gives, one after the other.
	data, err := w.Marshal(w.req)
	if err != nil {
		t.Fatal(err)
	}
	var got loggingpb.WriteLogEntriesRequest
	if err := proto.Unmarshal(data.Materialize(), &got); err != nil {
		t.Fatal(err)
	}
	return &got
}

// sentByProtobuf is req as Cloud Logging reads it when protobuf encodes it whole.
func sentByProtobuf(t *testing.T, req *loggingpb.WriteLogEntriesRequest) *loggingpb.WriteLogEntriesRequest {
	t.Helper()
	b, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	var got loggingpb.WriteLogEntriesRequest
	if err := proto.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	return &got
}

// Entries encoded by wireRequest are the entries protobuf would have sent, field for field:
// every fixture record's and each shape's as the mapper makes them (text, JSON encoded
// already, JSON with fields lifted out: HTTP requests, source locations, labels, traces),
// a request's own fields kept beside them.
func TestWireEntriesAreProtobufs(t *testing.T) {
	f := startFake(t)
	s := newSink(t, f, nil)
	batches := fixtureAndShapeBatches(t)
	var odd []record.Record
	for _, body := range []map[string]any{
		{"log": "plain \xff\xfe line"},
		{"log": `{"severity":"ERROR","httpRequest":{"requestMethod":"GET","status":200},"logging.googleapis.com/labels":{"a":"b","":""},"logging.googleapis.com/sourceLocation":{"file":"f.go","line":"3"}}`},
		{"log": `{"message":"m","logging.googleapis.com/trace":"0123456789abcdef0123456789abcdef","logging.googleapis.com/spanId":"01","logging.googleapis.com/trace_sampled":true,"logging.googleapis.com/operation":{"id":"o","first":true}}`},
		{"msg": "merged", "n": 1, "stream": "stderr"},
	} {
		b, _ := msgp.AppendIntf(nil, body)
		odd = append(odd, record.Record{Sec: 1795694400, Nsec: 5, Body: b})
	}
	batches = append(batches, fixture.Chunk("t", odd))
	var plain, other int
	for _, b := range batches {
		sc := s.m.newScratch()
		sc.startChunk(b, time.Now(), 30*24*time.Hour)
		req := &loggingpb.WriteLogEntriesRequest{LogName: "projects/p/logs/x", PartialSuccess: true, Labels: map[string]string{"k8s-pod/app": "a"}}
		for i := range b.Records {
			e := s.m.entry(&b.Records[i], i, b.Tag, sc, time.Now())
			e.Resource = nil
			if plainEntry(e) {
				if _, ok := appendPlain(nil, e); !ok {
					t.Fatalf("%s, record %d: written at another length than measured", b.Tag, i)
				}
				plain++
			} else {
				other++
			}
			req.Entries = append(req.Entries, e)
		}
		if got, want := wireDecoded(t, req), sentByProtobuf(t, req); !proto.Equal(got, want) {
			for i := range want.Entries {
				if i >= len(got.Entries) || !proto.Equal(got.Entries[i], want.Entries[i]) {
					t.Fatalf("%s, entry %d: sent\n%v\nprotobuf sends\n%v", b.Tag, i, got.Entries[min(i, len(got.Entries)-1)], want.Entries[i])
				}
			}
			t.Fatalf("%s: the request as sent differs from the one built", b.Tag)
		}
		sc.reset()
	}
	if plain < 100 || other < 2 {
		t.Fatalf("%d entries encoded here and %d by protobuf: both ways are not tried", plain, other)
	}
}

// Every field of LogEntry, set on an entry of its own: appendEntry either writes it or
// leaves the entry to protobuf, never drops it. A field a later version of the API adds
// fails here until it is one or the other.
func TestWireEntryKeepsEveryField(t *testing.T) {
	fields := (&loggingpb.LogEntry{}).ProtoReflect().Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		e := &loggingpb.LogEntry{InsertId: "id", Severity: 300}
		m := e.ProtoReflect()
		switch {
		case fd.IsMap():
			mp := m.Mutable(fd).Map()
			mp.Set(protoreflect.ValueOfString("k").MapKey(), protoreflect.ValueOfString("v"))
			mp.Set(protoreflect.ValueOfString("").MapKey(), protoreflect.ValueOfString(""))
		case fd.Kind() == protoreflect.MessageKind:
			sub := m.NewField(fd).Message()
			if sf := sub.Descriptor().Fields(); sf.Len() > 0 {
				if f1 := sf.Get(0); f1.Kind() == protoreflect.StringKind && !f1.IsList() && !f1.IsMap() {
					sub.Set(f1, protoreflect.ValueOfString("s"))
				}
			}
			m.Set(fd, protoreflect.ValueOfMessage(sub))
		case fd.Kind() == protoreflect.StringKind:
			m.Set(fd, protoreflect.ValueOfString("s"))
		case fd.Kind() == protoreflect.BoolKind:
			m.Set(fd, protoreflect.ValueOfBool(true))
		case fd.Kind() == protoreflect.EnumKind:
			m.Set(fd, protoreflect.ValueOfEnum(200))
		default:
			t.Fatalf("field %s: a kind (%v) this test does not set", fd.Name(), fd.Kind())
		}
		if _, ok := appendPlain(nil, e); plainEntry(e) && !ok {
			t.Errorf("field %s: written at another length than measured", fd.Name())
		}
		req := &loggingpb.WriteLogEntriesRequest{Entries: []*loggingpb.LogEntry{e}}
		if got, want := wireDecoded(t, req), sentByProtobuf(t, req); !proto.Equal(got, want) {
			t.Errorf("field %s: sent %v, protobuf sends %v", fd.Name(), got.Entries[0], want.Entries[0])
		}
	}
}

// The sink's requests, sent through its own codec, reach the service as the client's own
// would: the same content type, and every entry.
func TestWireRequestsGoAsTheClientSendsThem(t *testing.T) {
	f := startFake(t)
	s := newSink(t, f, nil)
	b := fixture.Batches(t, "kube-merged")[0]
	deliver(t, s, b)
	if got := len(f.entries()); got != len(b.Records) {
		t.Fatalf("%d entries arrived of %d", got, len(b.Records))
	}
	f.mu.Lock()
	sent := maps.Clone(f.types)
	clear(f.types)
	f.mu.Unlock()
	if _, err := s.client.WriteLogEntries(context.Background(), &loggingpb.WriteLogEntriesRequest{LogName: "projects/blog-prod/logs/x", Entries: []*loggingpb.LogEntry{{Payload: &loggingpb.LogEntry_TextPayload{TextPayload: "x"}}}}); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var own string
	for k := range f.types {
		own = k
	}
	if len(sent) != 1 || len(f.types) != 1 || sent[own] == 0 {
		t.Errorf("content types %v, the client's own %v", sent, f.types)
	}
}
