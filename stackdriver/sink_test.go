package stackdriver

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/logging/apiv2/loggingpb"
	"github.com/tinylib/msgp/msgp"
	ltype "google.golang.org/genproto/googleapis/logging/type"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/trailstack/trailstack/core"
	"github.com/trailstack/trailstack/record"
	"github.com/trailstack/trailstack/testkit/fixture"
)

func newSink(t testing.TB, f *fakeLogging, keys core.MapGetter) *sink {
	t.Helper()
	// The fixtures' records are from 2026-11-26: a retention of ten years keeps their times
	// as they are whenever the tests run (TestTimestampsOlderThanRetention sets its own).
	base := core.MapGetter{"endpoint": f.addr, "endpoint_plaintext": "on", "project_id": "blog-prod",
		"cluster_name": "blog-cluster", "cluster_location": "europe-west1", "retention": "87600h"}
	for k, v := range keys {
		base[k] = v
	}
	return fixture.Sink(t, Kind, base).(*sink)
}

func deliver(t *testing.T, s *sink, b *core.Batch) {
	t.Helper()
	if res := s.Deliver(context.Background(), b); res.Status != core.Delivered {
		t.Fatalf("%v %v", res.Status, res.Err)
	}
}

// Every record of kube-merged and kube-raw, through the real client to the fake server:
// resource, log name, severity, payload kind, lifted fields, labels and insertId.
func TestMappingOfEveryFixtureRecord(t *testing.T) {
	for _, set := range []string{"kube-merged", "kube-raw"} {
		t.Run(set, func(t *testing.T) {
			f := startFake(t)
			s := newSink(t, f, nil)
			var recs []*record.Record
			for _, b := range fixture.Batches(t, set) {
				deliver(t, s, b)
				for i := range b.Records {
					recs = append(recs, &b.Records[i])
				}
			}
			got := f.entries()
			if len(got) != len(recs) || len(got) != 206 {
				t.Fatalf("%d entries written for %d records", len(got), len(recs))
			}
			ids := map[string]bool{}
			var lifted, jsonN, textN int
			for i, e := range got {
				r := recs[i]
				res := e.Resource
				if res.Type != "k8s_container" || res.Labels["project_id"] != "blog-prod" || res.Labels["location"] != "europe-west1" ||
					res.Labels["cluster_name"] != "blog-cluster" || res.Labels["namespace_name"] != fixture.Text(r, "kubernetes", "namespace_name") ||
					res.Labels["pod_name"] != fixture.Text(r, "kubernetes", "pod_name") || res.Labels["container_name"] != fixture.Text(r, "kubernetes", "container_name") {
					t.Fatalf("entry %d: resource %v", i, res)
				}
				if e.LogName != "projects/blog-prod/logs/"+fixture.Text(r, "stream") {
					t.Fatalf("entry %d: log name %s", i, e.LogName)
				}
				if !e.Timestamp.AsTime().Equal(r.Time()) {
					t.Fatalf("entry %d: timestamp %v, want %v", i, e.Timestamp.AsTime(), r.Time())
				}
				if e.Labels["k8s-pod/app"] != fixture.Text(r, "kubernetes", "labels", "app") || e.Labels["k8s-pod/app"] == "" {
					t.Fatalf("entry %d: labels %v", i, e.Labels)
				}
				if ids[e.InsertId] || !regexp.MustCompile(`^[0-9a-f]{16}-[0-9]+$`).MatchString(e.InsertId) {
					t.Fatalf("entry %d: insertId %q repeated or malformed", i, e.InsertId)
				}
				ids[e.InsertId] = true

				// What the application logged: a JSON object (merged into the body, or a
				// JSON line) becomes jsonPayload, anything else textPayload.
				var fields map[string]any
				logLine, hasLog := r.Lookup("log")
				if hasLog {
					text := strings.TrimRight(str(logLine), "\n")
					if p := (&structpb.Struct{}); strings.HasPrefix(text, "{") && p.UnmarshalJSON([]byte(text)) == nil {
						fields = p.AsMap()
					} else if e.GetTextPayload() != text {
						t.Fatalf("entry %d: text %q, want %q", i, e.GetTextPayload(), text)
					}
				} else {
					// The application's keys: the body but the filter's map and the keys
					// the cri parser wrote (time, stream, _p; none repeats in the fixtures).
					fields = map[string]any{}
					_ = record.Value(r.Body).Range(func(k []byte, v record.Value) bool {
						switch string(k) {
						case "kubernetes", "time", "stream", "_p":
						default:
							fields[string(k)] = (&converter{budget: maxFlushValues}).toValue(v, 0).AsInterface()
						}
						return true
					})
				}
				wantSev := map[string]ltype.LogSeverity{"stderr": ltype.LogSeverity_ERROR, "stdout": ltype.LogSeverity_INFO}[fixture.Text(r, "stream")]
				if fields == nil {
					textN++
				} else {
					jsonN++
					p := e.GetJsonPayload().AsMap()
					// The names the fixtures' applications write, spelled out here rather
					// than read through the table under test.
					named := func(name string) ltype.LogSeverity {
						sev, ok := map[string]ltype.LogSeverity{
							"CRITICAL": ltype.LogSeverity_CRITICAL, "ERROR": ltype.LogSeverity_ERROR, "error": ltype.LogSeverity_ERROR,
							"WARNING": ltype.LogSeverity_WARNING, "warn": ltype.LogSeverity_WARNING,
							"INFO": ltype.LogSeverity_INFO, "info": ltype.LogSeverity_INFO, "debug": ltype.LogSeverity_DEBUG,
						}[name]
						if !ok {
							t.Fatalf("entry %d: a severity %q the test does not know", i, name)
						}
						return sev
					}
					if s, ok := fields["severity"].(string); ok {
						wantSev = named(s)
						if _, still := p["severity"]; still {
							t.Fatalf("entry %d: severity left in the payload", i)
						}
					} else if l, ok := fields["level"].(string); ok {
						wantSev = named(l)
					}
					if tr, ok := fields["logging.googleapis.com/trace"]; ok {
						lifted++
						sl := fields["logging.googleapis.com/sourceLocation"].(map[string]any)
						hr := fields["httpRequest"].(map[string]any)
						if e.Trace != tr || e.SpanId != fields["logging.googleapis.com/spanId"] ||
							e.SourceLocation.GetFile() != sl["file"] || e.SourceLocation.GetFunction() != sl["function"] ||
							e.Labels["tenant"] != "acme" || e.HttpRequest.GetRequestUrl() != hr["requestUrl"] ||
							e.HttpRequest.GetStatus() != 201 || e.HttpRequest.GetLatency().AsDuration() != 12*time.Millisecond {
							t.Fatalf("entry %d: special fields not lifted: %v", i, e)
						}
						for k := range p {
							if strings.HasPrefix(k, "logging.googleapis.com/") || k == "httpRequest" {
								t.Fatalf("entry %d: %s left in the payload", i, k)
							}
						}
					}
					if p["message"] != fields["message"] && p["msg"] != fields["msg"] {
						t.Fatalf("entry %d: payload %v lost the message of %v", i, p, fields)
					}
				}
				if e.Severity != wantSev {
					t.Fatalf("entry %d: severity %v, want %v", i, e.Severity, wantSev)
				}
			}
			if lifted == 0 || jsonN == 0 || textN == 0 {
				t.Fatalf("lifted %d, json %d, text %d: the fixtures have all three", lifted, jsonN, textN)
			}
			t.Logf("%d json payloads (%d with special fields lifted), %d text payloads", jsonN, lifted, textN)
		})
	}
}

func TestRetrySendsTheSameInsertIDs(t *testing.T) {
	f := startFake(t)
	s := newSink(t, f, nil)
	b := fixture.Batch(t, fixture.Files(t, "kube-merged")[0])
	var attempts [][]*loggingpb.LogEntry
	var calls int
	f.setAnswer(func(r *loggingpb.WriteLogEntriesRequest) error {
		attempts = append(attempts, r.Entries)
		if calls++; calls == 1 {
			return status.Error(codes.Unavailable, "try again")
		}
		return nil
	})
	if res := s.Deliver(context.Background(), b); res.Status != core.Retry {
		t.Fatalf("first: %v", res.Status)
	}
	first := attempts[0]
	attempts = nil
	deliver(t, s, b)
	// The retry sends every record, and the entries of the failed request again with the
	// same ids and times.
	again := map[string]*loggingpb.LogEntry{}
	for _, a := range attempts {
		for _, e := range a {
			again[e.InsertId] = e
		}
	}
	if len(first) == 0 || len(again) != len(b.Records) {
		t.Fatalf("first attempt %d entries, retry %d of %d records", len(first), len(again), len(b.Records))
	}
	for _, a := range first {
		c := again[a.InsertId]
		if c == nil || !a.Timestamp.AsTime().Equal(c.Timestamp.AsTime()) {
			t.Fatalf("%s %v then %v", a.InsertId, a.Timestamp, c)
		}
	}
}

func TestOutcomes(t *testing.T) {
	f := startFake(t)
	s := newSink(t, f, core.MapGetter{"timeout": "1s"})
	b := fixture.Batch(t, fixture.Files(t, "kube-merged")[1])
	partial := status.New(codes.InvalidArgument, "some entries invalid")
	partial, _ = partial.WithDetails(&loggingpb.WriteLogEntriesPartialErrors{
		LogEntryErrors: map[int32]*rpcstatus.Status{3: {Code: int32(codes.InvalidArgument), Message: "bad label"}},
	})
	for _, c := range []struct {
		name string
		err  error
		slow bool
		want core.Status
	}{
		{"ok", nil, false, core.Delivered},
		{"partial", partial.Err(), false, core.Delivered},
		{"invalid request", status.Error(codes.InvalidArgument, "request malformed"), false, core.Delivered},
		{"unavailable", status.Error(codes.Unavailable, "down"), false, core.Retry},
		{"quota", status.Error(codes.ResourceExhausted, "quota"), false, core.Retry},
		{"internal", status.Error(codes.Internal, "oops"), false, core.Retry},
		{"aborted", status.Error(codes.Aborted, "aborted"), false, core.Retry},
		{"unauthenticated", status.Error(codes.Unauthenticated, "who"), false, core.Retry},
		{"permission", status.Error(codes.PermissionDenied, "no"), false, core.Retry},
		{"not found", status.Error(codes.NotFound, "no project"), false, core.Retry},
		{"deadline", nil, true, core.Retry},
	} {
		release := make(chan struct{})
		f.setAnswer(func(*loggingpb.WriteLogEntriesRequest) error {
			if c.slow {
				select {
				case <-release:
				case <-time.After(5 * time.Second):
				}
			}
			return c.err
		})
		start := time.Now()
		res := s.Deliver(context.Background(), b)
		close(release)
		if res.Status != c.want {
			t.Errorf("%s: %v (%v), want %v", c.name, res.Status, res.Err, c.want)
		}
		// Refused one by one, every entry is dropped and counted; partially, the one named.
		if want := map[string]int{"invalid request": len(b.Records), "partial": 1}[c.name]; res.Refused != want {
			t.Errorf("%s: %d refused, want %d", c.name, res.Refused, want)
		}
		if c.slow && time.Since(start) > 3*time.Second {
			t.Errorf("%s: took %v with a 1s timeout", c.name, time.Since(start))
		}
	}
	// Network errors: nothing listens.
	f2 := &fakeLogging{addr: "127.0.0.1:1"}
	s2 := newSink(t, f2, core.MapGetter{"timeout": "2s"})
	if res := s2.Deliver(context.Background(), b); res.Status != core.Retry {
		t.Errorf("connection refused: %v", res.Status)
	}
}

// A chunk larger than one request is split under the 10 MB limit; an entry over the 256 KB
// entry limit is cut and marked, not failed.
func TestLimits(t *testing.T) {
	f := startFake(t)
	s := newSink(t, f, nil)
	big := fixture.Batch(t, fixture.Files(t, "kube-merged")[0])
	var b core.Batch
	b.Tag = big.Tag
	var huge *record.Record
	for i := range big.Records {
		if v, ok := big.Records[i].Lookup("log"); ok && len(v) > 150000 {
			huge = &big.Records[i]
		}
	}
	if huge == nil {
		t.Fatal("no 200 KB record in the fixture")
	}
	for i := 0; i < 60; i++ { // 60 x 200 KB: more than one request
		b.Records = append(b.Records, *huge)
	}
	deliver(t, s, &b)
	f.mu.Lock()
	nreq := len(f.requests)
	f.mu.Unlock()
	got := f.entries()
	if nreq < 2 || len(got) != 60 {
		t.Fatalf("%d requests, %d entries", nreq, len(got))
	}
	for _, r := range f.requests {
		var size int
		for _, e := range r.Entries {
			size += len(e.GetTextPayload())
		}
		if size > maxRequestBytes {
			t.Fatalf("request of %d bytes", size)
		}
	}
	if e := got[0]; len(e.GetTextPayload()) > maxEntryBytes {
		t.Fatalf("entry of %d bytes", len(e.GetTextPayload()))
	}
	// The API's own limit is 256 KB; this record is 200 KB of text, under it, and whole.
	hv, _ := huge.Lookup("log")
	if want := strings.TrimRight(str(hv), "\n"); got[0].GetTextPayload() != want {
		t.Fatalf("the 200 KB line arrived as %d bytes, want %d", len(got[0].GetTextPayload()), len(want))
	}
	// The estimate never undercounts.
	for _, e := range got {
		e.Resource, e.Labels = nil, nil
		if est, real := sizeBound(e, 0), proto.Size(e); est < real {
			t.Fatalf("estimated %d bytes for an entry of %d", est, real)
		}
	}
	// Above the limit: cut and marked.
	e := &loggingpb.LogEntry{Payload: &loggingpb.LogEntry_TextPayload{TextPayload: strings.Repeat("é", 200000)}}
	if n := cutToFit(e, 400000); n > entryBudget || !strings.HasSuffix(e.GetTextPayload(), core.TruncMark) {
		t.Fatalf("shrunk to %d bytes", n)
	}
}

func TestFutureTimestamp(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) // fixtures are from 2026-11-26
	f := startFake(t)
	s := newSink(t, f, nil)
	s.clock = func() time.Time { return now }
	b := fixture.Batch(t, fixture.Files(t, "kube-merged")[1])
	deliver(t, s, b)
	e := f.entries()[0]
	if !e.Timestamp.AsTime().Equal(now) || e.Labels["trailstack/original_timestamp"] != b.Records[0].Time().UTC().Format(time.RFC3339Nano) {
		t.Fatalf("timestamp %v, labels %v", e.Timestamp.AsTime(), e.Labels)
	}
}

// Records older than the log bucket keeps (an application that logs "time": 0, or seconds
// where milliseconds were meant) would be accepted and never stored: they are sent with a
// neighbour's time, the same on a retry (so the retry is a copy the service drops), their
// own in a label; records within the retention keep theirs.
func TestTimestampsOlderThanRetention(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	f := startFake(t)
	s := newSink(t, f, core.MapGetter{"retention": "720h"})
	s.clock = func() time.Time { return now }
	line := func(sec int64, log string) record.Record {
		b := msgp.AppendMapHeader(nil, 1)
		b = msgp.AppendString(b, "log")
		return record.Record{Sec: sec, Body: msgp.AppendString(b, log)}
	}
	good := now.Add(-time.Hour).Unix()
	b := fixture.Chunk("app.x", []record.Record{line(0, "epoch"), line(good, "fine"), line(good-40*86400, "too old")})
	deliver(t, s, b)
	deliver(t, s, b) // a retry
	got := f.entries()
	if len(got) != 6 {
		t.Fatalf("%d entries", len(got))
	}
	for i, want := range []struct {
		ts    int64
		label string
	}{{good, "1970-01-01T00:00:00Z"}, {good, ""}, {good, time.Unix(good-40*86400, 0).UTC().Format(time.RFC3339Nano)}} {
		for _, e := range []*loggingpb.LogEntry{got[i], got[3+i]} {
			if e.Timestamp.AsTime().Unix() != want.ts || e.Labels["trailstack/original_timestamp"] != want.label {
				t.Errorf("%q: time %v, label %q", e.GetTextPayload(), e.Timestamp.AsTime(), e.Labels["trailstack/original_timestamp"])
			}
		}
		if got[i].InsertId != got[3+i].InsertId {
			t.Errorf("%q: insertIds %s and %s on a retry", got[i].GetTextPayload(), got[i].InsertId, got[3+i].InsertId)
		}
	}
}

func TestFallbackResources(t *testing.T) {
	t.Setenv("NODE_NAME", "node-9")
	// A record with no metadata under a tag that names no container (a node's own log).
	plain := fixture.Batch(t, fixture.Files(t, "plain")[1])
	plain.Tag = "node.var.log.syslog"
	for kind, want := range map[string]map[string]string{
		"k8s_node":     {"project_id": "blog-prod", "location": "europe-west1", "cluster_name": "blog-cluster", "node_name": "node-9"},
		"generic_node": {"project_id": "blog-prod", "location": "europe-west1", "namespace": "blog-cluster", "node_id": "node-9"},
		"global":       {"project_id": "blog-prod"},
	} {
		f := startFake(t)
		s := newSink(t, f, core.MapGetter{"fallback_resource": kind})
		deliver(t, s, plain)
		e := f.entries()[0]
		if e.Resource.Type != kind || len(e.Resource.Labels) != len(want) {
			t.Fatalf("%s: %v", kind, e.Resource)
		}
		for k, v := range want {
			if e.Resource.Labels[k] != v {
				t.Fatalf("%s: %v", kind, e.Resource)
			}
		}
	}
}

func TestMetadataServer(t *testing.T) {
	fakeMetadata(t, map[string]string{
		"project/project-id":                   "blog-prod",
		"instance/attributes/cluster-name":     "from-metadata",
		"instance/attributes/cluster-location": "us-central1",
	})
	f := startFake(t)
	s, err := fixture.Build(t, Kind, core.MapGetter{"endpoint": f.addr, "endpoint_plaintext": "on"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	deliver(t, s.(*sink), fixture.Batch(t, fixture.Files(t, "kube-merged")[1]))
	l := f.entries()[0].Resource.Labels
	if l["cluster_name"] != "from-metadata" || l["location"] != "us-central1" || l["project_id"] != "blog-prod" {
		t.Fatalf("labels %v", l)
	}

	// Without the cluster attributes, Init fails naming the key.
	fakeMetadata(t, map[string]string{"project/project-id": "blog-prod"})
	if _, err := fixture.Build(t, Kind, core.MapGetter{"endpoint": f.addr, "endpoint_plaintext": "on"}, nil); err == nil || !strings.Contains(err.Error(), `config key "cluster_name": not set`) {
		t.Fatalf("error %v", err)
	}
}

func TestConcurrentWorkers(t *testing.T) {
	f := startFake(t)
	s := newSink(t, f, nil)
	batches := fixture.Batches(t, "kube-merged")
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, b := range batches {
				if res := s.Deliver(context.Background(), b); res.Status != core.Delivered {
					t.Errorf("%v %v", res.Status, res.Err)
				}
			}
		}()
	}
	wg.Wait()
	if n := len(f.entries()); n != 4*206 {
		t.Fatalf("%d entries", n)
	}
}

// The names Google's Ops Agent and Fluent Bit's out_stackdriver read are lifted as GKE's
// are, but the log name, project and resource a pod could claim stay in its payload.
func TestLiftOpsAgentAndFluentBitNames(t *testing.T) {
	f := startFake(t)
	s := newSink(t, f, nil)
	body, err := msgp.AppendIntf(nil, map[string]any{
		"message": "m", "stream": "stdout",
		"logging.googleapis.com/severity":          "WARNING",
		"logging.googleapis.com/traceSampled":      true,
		"logging.googleapis.com/http_request":      map[string]any{"requestMethod": "GET", "status": 503},
		"logging.googleapis.com/logName":           "projects/victim/logs/audit",
		"logging.googleapis.com/projectId":         "victim",
		"logging.googleapis.com/local_resource_id": "k8s_container.kube-system.kube-apiserver-0.kube-apiserver",
	})
	if err != nil {
		t.Fatal(err)
	}
	deliver(t, s, fixture.Chunk("app.x", []record.Record{{Sec: 1795694400, Body: body}}))
	e := f.entries()[0]
	if e.Severity != ltype.LogSeverity_WARNING || !e.TraceSampled || e.HttpRequest.GetStatus() != 503 || e.HttpRequest.GetRequestMethod() != "GET" {
		t.Fatalf("entry %v", e)
	}
	p := e.GetJsonPayload().AsMap()
	for _, k := range []string{"logName", "projectId", "local_resource_id"} {
		if _, ok := p["logging.googleapis.com/"+k]; !ok {
			t.Errorf("%s taken out of the payload: %v", k, p)
		}
	}
	if len(p) != 4 || !strings.HasSuffix(e.LogName, "/logs/stdout") {
		t.Errorf("payload %v, log name %s", p, e.LogName)
	}
}

func TestLiftEverySpecialField(t *testing.T) {
	f := startFake(t)
	s := newSink(t, f, nil)
	labels := map[string]any{}
	for i := 0; i < 80; i++ {
		labels[fmt.Sprintf("l%02d", i)] = "v"
	}
	body, err := msgp.AppendIntf(nil, map[string]any{
		"message": "m", "severity": 500, "stream": "stdout",
		"logging.googleapis.com/operation":     map[string]any{"id": "op1", "producer": "p", "first": true},
		"logging.googleapis.com/insertId":      "my-id",
		"logging.googleapis.com/trace_sampled": true,
		"logging.googleapis.com/labels":        labels,
		"time":                                 "2026-11-26T12:00:00Z",
	})
	if err != nil {
		t.Fatal(err)
	}
	deliver(t, s, fixture.Chunk("app.x", []record.Record{{Sec: 1795694400, Body: body}}))
	e := f.entries()[0]
	if e.Operation.GetId() != "op1" || e.Operation.GetProducer() != "p" || !e.Operation.GetFirst() ||
		e.InsertId != "my-id" || !e.TraceSampled || e.Severity != ltype.LogSeverity_ERROR || len(e.Labels) != maxLabels {
		t.Fatalf("entry %v", e)
	}
	p := e.GetJsonPayload().AsMap()
	if len(p) != 1 || p["message"] != "m" {
		t.Fatalf("payload %v: want only the message left", p)
	}
	if e.Resource.Type != "k8s_node" || e.LogName != "projects/blog-prod/logs/stdout" {
		t.Fatalf("resource %v log %s", e.Resource, e.LogName)
	}
}

func TestProjectFromKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "key.json")
	if err := os.WriteFile(path, []byte(`{"type":"service_account","project_id":"from-key"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := projectFromKeyFile(path); got != "from-key" {
		t.Fatalf("project %q", got)
	}
}

// A Cloud Logging that does not answer: the flush ends at its timeout, and the flushes
// queued behind it answer RETRY at once for a while instead of each waiting as long again
// (at shutdown, Fluent Bit runs every queued flush before it exits).
func TestHungServiceAnswersAtOnce(t *testing.T) {
	f := startFake(t)
	s := newSink(t, f, core.MapGetter{"timeout": "1s"})
	b := fixture.Batch(t, fixture.Files(t, "kube-merged")[0])
	hang := make(chan struct{})
	defer close(hang)
	var calls atomic.Int32
	f.setAnswer(func(*loggingpb.WriteLogEntriesRequest) error { calls.Add(1); <-hang; return nil })
	start := time.Now()
	if res := s.Deliver(context.Background(), b); res.Status != core.Retry || time.Since(start) > 5*time.Second {
		t.Fatalf("first: %v after %v", res.Status, time.Since(start))
	} else {
		t.Logf("first flush: %v", res.Err)
	}
	start = time.Now()
	for i := 0; i < 10; i++ {
		if res := s.Deliver(context.Background(), b); res.Status != core.Retry || !strings.Contains(res.Err.Error(), "not trying") {
			t.Fatalf("queued flush %d: %v %v", i, res.Status, res.Err)
		}
	}
	if d := time.Since(start); d > time.Second || calls.Load() != 1 {
		t.Fatalf("10 queued flushes took %v and %d requests", d, calls.Load())
	}
	s.backoff.Succeeded()
	f.setAnswer(nil)
	deliver(t, s, b)
}

// One entry that the service refuses, in a request it then refuses as a whole (no per-entry
// errors), costs that entry only: the requests are halved down to it, every other entry is
// written, and a chunk split into several requests still sends the ones after it.
func TestOneRefusedEntryCostsOneEntry(t *testing.T) {
	f := startFake(t)
	s := newSink(t, f, nil)
	b := fixture.Batch(t, fixture.Files(t, "kube-merged")[0]) // api: several resources, several requests
	var requests atomic.Int32
	f.setAnswer(func(r *loggingpb.WriteLogEntriesRequest) error {
		requests.Add(1)
		for _, e := range r.Entries {
			if strings.Contains(e.GetTextPayload(), "héllo") {
				return status.Error(codes.InvalidArgument, "entry has a forbidden word")
			}
		}
		return nil
	})
	res := s.Deliver(context.Background(), b)
	if res.Status != core.Delivered || res.Refused != 1 {
		t.Fatalf("%v %v, %d refused; want delivered with 1 refused", res.Status, res.Err, res.Refused)
	}
	got := f.entries()
	if len(got) != len(b.Records)-1 {
		t.Fatalf("%d of %d entries written, want all but the refused one", len(got), len(b.Records))
	}
	for _, e := range got {
		if strings.Contains(e.GetTextPayload(), "héllo") {
			t.Fatal("the refused entry was written")
		}
	}
	t.Logf("%d records, 1 refused: %d requests", len(b.Records), requests.Load())
}

// Without the filter's metadata, a container's records still get its k8s_container
// resource: from the tag, the kubelet's file name, as GKE's agent does.
func TestContainerResourceFromTheTag(t *testing.T) {
	f := startFake(t)
	s := newSink(t, f, nil)
	deliver(t, s, fixture.Batch(t, fixture.Files(t, "plain")[1]))
	for _, e := range f.entries() {
		l := e.Resource.GetLabels()
		if e.Resource.GetType() != "k8s_container" || l["namespace_name"] != "monitoring" || l["pod_name"] != "grafana-6b8f7d9c4-wl9zt" || l["container_name"] != "grafana" {
			t.Fatalf("%v", e.Resource)
		}
	}
}

// insertIds: the same record of the same chunk gets the same id on every try, also after a
// restart (nothing but the chunk's bytes goes into it), and two equal lines with equal
// times in two chunks are two entries (their chunks differ).
func TestInsertIDsAreTheChunksNotTheLines(t *testing.T) {
	f := startFake(t)
	s := newSink(t, f, nil)
	body := stdoutLine
	tag := "kube.var.log.containers.p_ns_c-" + strings.Repeat("ab", 32) + ".log"
	same := record.Record{Sec: 1795694400, Body: body("ping")} // second-resolution time, from a parser
	a := fixture.Chunk(tag, []record.Record{{Sec: 1795694399, Body: body("start")}, same})
	b := fixture.Chunk(tag, []record.Record{same, {Sec: 1795694401, Body: body("stop")}})
	deliver(t, s, a)
	deliver(t, s, b)
	s2 := newSink(t, f, nil) // another process: an engine restarted on the same storage
	deliver(t, s2, a)
	got := f.entries()
	if got[1].GetTextPayload() != "ping" || got[2].GetTextPayload() != "ping" || got[1].InsertId == got[2].InsertId {
		t.Fatalf("two writes of ping share insertId %s", got[1].InsertId)
	}
	for i := 0; i < 2; i++ {
		if got[i].InsertId != got[4+i].InsertId || !got[i].Timestamp.AsTime().Equal(got[4+i].Timestamp.AsTime()) {
			t.Fatalf("entry %d: %s %v, then %s %v after a restart", i, got[i].InsertId, got[i].Timestamp, got[4+i].InsertId, got[4+i].Timestamp)
		}
	}
}

// A record more than a day ahead takes the time of the record before it (at the head of a
// chunk, the first after it): a retry, even a day later, writes the same timestamp.
func TestFutureRecordTakesItsNeighboursTime(t *testing.T) {
	f := startFake(t)
	s := newSink(t, f, nil)
	body := stdoutLine
	now := time.Now()
	future := now.Add(72 * time.Hour).Unix()
	b := fixture.Chunk("t", []record.Record{
		{Sec: future, Body: body("head")},
		{Sec: now.Unix() - 10, Body: body("a")},
		{Sec: future, Body: body("b")},
	})
	deliver(t, s, b)
	deliver(t, s, b)
	got := f.entries()
	want := []int64{now.Unix() - 10, now.Unix() - 10, now.Unix() - 10}
	for i, e := range got {
		if e.Timestamp.Seconds != want[i%3] || (i%3 != 1) != (e.Labels["trailstack/original_timestamp"] != "") {
			t.Fatalf("entry %d (%s): %v %v", i, e.GetTextPayload(), e.Timestamp.AsTime(), e.Labels)
		}
		if e.InsertId != got[i%3].InsertId {
			t.Fatalf("entry %d: insertId %s on retry, was %s", i, e.InsertId, got[i%3].InsertId)
		}
	}
}

// A body that is one long array of small numbers would grow about 80 times as protobuf
// values: past the flush's budget, payloads go as JSON text, cut and marked; the flush's
// heap stays bounded, every record is still written, and the log says what happened.
func TestPayloadMemoryIsBounded(t *testing.T) {
	f := startFake(t)
	s := newSink(t, f, nil)
	arr := make([]any, 60000)
	for i := range arr {
		arr[i] = i % 100
	}
	var recs []record.Record
	for i := 0; i < 8; i++ { // about 1.6 MB of msgpack: one chunk
		b, _ := msgp.AppendIntf(nil, map[string]any{"stream": "stdout", "samples": arr, "n": i})
		recs = append(recs, record.Record{Sec: 1795694400, Body: b})
	}
	batch := fixture.Chunk("t", recs)

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	deliver(t, s, batch)
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 64<<20 {
		t.Errorf("one flush of %d KB allocated %d MB", len(recs)*len(recs[0].Body)>>10, grew>>20)
	}
	got := f.entries()
	if len(got) != len(recs) {
		t.Fatalf("%d entries, want %d", len(got), len(recs))
	}
	var text int
	for _, e := range got {
		if p := e.GetTextPayload(); p != "" {
			text++
			if !strings.HasPrefix(p, `{"`) || !strings.Contains(p, `"n":`) || len(p) > entryBudget {
				t.Fatalf("text payload of %d bytes: %.80s", len(p), p)
			}
		}
	}
	if text == 0 {
		t.Error("every array became protobuf values")
	}
	t.Logf("%d of 8 array records as JSON text; allocated %d MB", text, (after.TotalAlloc-before.TotalAlloc)>>20)
}

// A value nested deeper than 32 levels becomes null in jsonPayload, and the log says so.
func TestDeepNestingIsLogged(t *testing.T) {
	f := startFake(t)
	var logged bytes.Buffer
	s := newSink(t, f, nil)
	s.log = core.NewLogger("test", &logged)
	deep := any("leaf")
	for i := 0; i < 100; i++ {
		deep = map[string]any{"d": deep}
	}
	b, _ := msgp.AppendIntf(nil, map[string]any{"stream": "stdout", "deep": deep, "msg": "hi"})
	deliver(t, s, fixture.Chunk("t", []record.Record{{Sec: 1795694400, Body: b}}))
	e := f.entries()[0]
	if e.GetJsonPayload().GetFields()["msg"].GetStringValue() != "hi" || !strings.Contains(logged.String(), "1 values nested deeper than 32 levels written as null") {
		t.Fatalf("%v\nlog: %s", e.GetJsonPayload() != nil, logged.String())
	}
}

// Records whose tag names no container share the node's fallback resource, which goes once
// into the request's defaults like a container's, not once per entry.
func TestFallbackResourceIsSentOncePerRequest(t *testing.T) {
	t.Setenv("NODE_NAME", "node-9")
	f := startFake(t)
	s := newSink(t, f, nil)
	b := fixture.Batch(t, fixture.Files(t, "plain")[1])
	b.Tag = "node.var.log.syslog"
	deliver(t, s, b)
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.requests) != 1 || f.requests[0].Resource.GetType() != "k8s_node" {
		t.Fatalf("%d requests, resource %v", len(f.requests), f.requests[0].Resource)
	}
	for i, e := range f.requests[0].Entries {
		if e.Resource != nil {
			t.Fatalf("entry %d carries its own resource", i)
		}
	}
}

// stdoutLine is the body tail and the cri parser give a line on stdout.
func stdoutLine(line string) []byte {
	b, _ := msgp.AppendIntf(nil, map[string]any{"log": line, "stream": "stdout"})
	return b
}

// Consecutive entries that alternate between a few resources (a tag that gathers several
// nodes' logs, with node_name read from the record) go into one request per resource,
// which carries it once, with the log name most of its entries have: no entry is encoded
// with its own resource, only the other stream's with their log name; and every record
// arrives once, rightly placed.
func TestAlternatingResourcesAreSentOncePerRequest(t *testing.T) {
	f := startFake(t)
	s := newSink(t, f, core.MapGetter{"node_name": "$host"})
	hosts, streams := []string{"node-a", "node-b", "node-c"}, []string{"stdout", "stderr"}
	var recs []record.Record
	for i := 0; i < 600; i++ {
		stream := streams[0]
		if i%10 == 9 {
			stream = streams[1]
		}
		body, _ := msgp.AppendIntf(nil, map[string]any{"host": hosts[i%3], "stream": stream, "log": fmt.Sprintf("line %d", i)})
		recs = append(recs, record.Record{Sec: 1795694400 + int64(i), Body: body})
	}
	deliver(t, s, fixture.Chunk("forward.nodes", recs))
	f.mu.Lock()
	reqs := slices.Clone(f.requests)
	f.mu.Unlock()
	if len(reqs) != 3 {
		t.Fatalf("%d requests, want one per node: 3", len(reqs))
	}
	for _, r := range reqs {
		if r.Resource.GetType() != "k8s_node" || !strings.HasSuffix(r.LogName, "/logs/stdout") || len(r.Entries) != 200 {
			t.Fatalf("request: resource %v, log %q, %d entries", r.Resource, r.LogName, len(r.Entries))
		}
		own := 0
		for _, e := range r.Entries {
			if e.Resource != nil {
				t.Fatalf("entry %s carries its own resource %v", e.InsertId, e.Resource)
			}
			if e.LogName != "" {
				own++
			}
		}
		if own != 20 {
			t.Fatalf("%d entries carry a log name, want the 20 on stderr", own)
		}
	}
	got := f.entries()
	if len(got) != len(recs) {
		t.Fatalf("%d entries for %d records", len(got), len(recs))
	}
	for i, e := range got {
		want := streams[0]
		if i%10 == 9 {
			want = streams[1]
		}
		if e.GetTextPayload() != fmt.Sprintf("line %d", i) || e.Resource.Labels["node_name"] != hosts[i%3] || !strings.HasSuffix(e.LogName, "/logs/"+want) {
			t.Fatalf("entry %d: %q on %v in %s", i, e.GetTextPayload(), e.Resource.Labels, e.LogName)
		}
	}
}

// fixtureAndShapeBatches is every captured chunk and a 64 KiB chunk of each benchmark shape.
func fixtureAndShapeBatches(t *testing.T) []*core.Batch {
	batches := fixture.Batches(t, "kube-merged", "kube-raw")
	for _, shape := range fixture.Shapes {
		b, _ := fixture.ShapeBatch(shape, 64<<10)
		batches = append(batches, b)
	}
	return batches
}

// The size bound of an entry with a JSON payload, counted while converting it instead of
// measured, never undercounts: every fixture record, each shape's, and bodies made to
// grow the most as protobuf (arrays of small numbers, deep maps, invalid UTF-8, JSON text
// full of escapes).
func TestJSONSizeBoundNeverUndercounts(t *testing.T) {
	f := startFake(t)
	s := newSink(t, f, nil)
	batches := fixtureAndShapeBatches(t)
	small := make([]any, 5000)
	for i := range small {
		small[i] = i % 100
	}
	var odd []record.Record
	for _, body := range []map[string]any{
		{"samples": small},
		{"a": map[string]any{"b": map[string]any{"c": []any{1, true, nil, 2.5, "x"}}}, "": ""},
		{"bad": "\xff\xfe\xfd utf8", "\xc3": 1},
		{"log": `{"msg":"\u00e9\ud83d\ude00","n":[1,2,3,{"x":1e300}],"t":true,"e":{}}`},
		{"log": `{"severity":"ERROR","httpRequest":{"requestMethod":"GET","status":200,"latency":"1.5s"},"logging.googleapis.com/labels":{"a":"b"},"logging.googleapis.com/sourceLocation":{"file":"f.go","line":"3"}}`},
	} {
		b, _ := msgp.AppendIntf(nil, body)
		odd = append(odd, record.Record{Sec: 1795694400, Body: b})
	}
	batches = append(batches, fixture.Chunk("t", odd))
	var checked, json int
	for _, b := range batches {
		sc := s.m.newScratch()
		sc.startChunk(b, time.Now(), 30*24*time.Hour)
		for i := range b.Records {
			e := s.m.entry(&b.Records[i], i, b.Tag, sc, time.Now())
			e.Resource = nil
			if est, real := sizeBound(e, sc.conv.bound), proto.Size(e); est < real {
				t.Fatalf("%s record %d: estimated %d bytes for an entry of %d", b.Tag, i, est, real)
			}
			checked++
			if e.GetJsonPayload() != nil || len(e.ProtoReflect().GetUnknown()) > 0 {
				json++ // a Struct, or encoded already (appendBody)
			}
		}
		sc.reset()
	}
	if json < 50 {
		t.Fatalf("only %d of %d entries had a JSON payload", json, checked)
	}
}

// Cloud Logging pushing back (RESOURCE_EXHAUSTED, asking for a second's wait) for 3 s: the
// output waits as one, whatever the number of flushes queued, and sends one request after
// each wait until the service takes them again; nothing is lost and no flush answers RETRY.
func TestPushbackKeepsTheOutputToTheServicesPace(t *testing.T) {
	f := startFake(t)
	s := newSink(t, f, core.MapGetter{"timeout": "20s"})
	b := fixture.Batch(t, fixture.Files(t, "kube-merged")[1])
	quota := status.New(codes.ResourceExhausted, "Quota exceeded for quota metric 'Log write bytes'")
	quota, _ = quota.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(time.Second)})
	const window = 3 * time.Second
	var mu sync.Mutex
	var first time.Time
	refused := 0
	f.setAnswer(func(*loggingpb.WriteLogEntriesRequest) error {
		mu.Lock()
		defer mu.Unlock()
		if first.IsZero() {
			first = time.Now()
		}
		if time.Since(first) < window {
			refused++
			return quota.Err()
		}
		return nil
	})
	const flushes = 8
	var wg sync.WaitGroup
	results := make(chan core.Result, flushes)
	start := time.Now()
	for i := 0; i < flushes; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); results <- s.Deliver(context.Background(), b) }()
	}
	wg.Wait()
	close(results)
	for r := range results {
		if r.Status != core.Delivered {
			t.Fatalf("a flush answered %v: %v", r.Status, r.Err)
		}
	}
	// The first refusal meets each flush's first request in flight; after it, one request
	// a wait (about a second, the service's) until the quota is back.
	if refused > flushes+4 {
		t.Errorf("%d requests refused in %v: the flushes did not wait as one", refused, window)
	}
	if got := len(f.entries()); got != flushes*len(b.Records) {
		t.Errorf("%d entries stored, want %d", got, flushes*len(b.Records))
	}
	t.Logf("%d flushes delivered in %v through a %v pushback, %d requests refused", flushes, time.Since(start).Round(time.Millisecond), window, refused)
}

// A container whose kubernetes map changes between records (its labels, its node) gets each
// record's own pod labels, though the pod's identity, under the tag, stays the same.
func TestPodLabelsFollowTheRecordsMap(t *testing.T) {
	f := startFake(t)
	s := newSink(t, f, core.MapGetter{})
	c := fixture.ShapeContainers("kube")[0]
	type pod struct{ host, version string }
	pods := []pod{{"node-x", "1"}, {"node-x", "1"}, {"node-y", "1"}, {"node-x", "2"}, {"node-x", "1"}, {"node-y", "2"}}
	var recs []record.Record
	for i, p := range pods {
		body, _ := msgp.AppendIntf(nil, map[string]any{"log": fmt.Sprintf("line %d", i), "stream": "stdout", "kubernetes": map[string]any{
			"pod_name": c.Pod, "namespace_name": c.NS, "container_name": c.Name, "host": p.host,
			"labels": map[string]any{"app": "shop", "version": p.version},
		}})
		recs = append(recs, record.Record{Sec: 1795694400 + int64(i), Body: body})
	}
	deliver(t, s, fixture.Chunk("kube.var.log.containers."+c.File(), recs))
	got := f.entries()
	if len(got) != len(pods) {
		t.Fatalf("%d entries for %d records", len(got), len(pods))
	}
	for i, e := range got {
		if e.Labels["k8s-pod/version"] != pods[i].version || e.Labels["compute.googleapis.com/resource_name"] != pods[i].host {
			t.Fatalf("entry %d: labels %v, want version %s on %s", i, e.Labels, pods[i].version, pods[i].host)
		}
	}
}
