package stackdriver

import (
	"cmp"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"cloud.google.com/go/logging/apiv2/loggingpb"
	"github.com/trailstack/trailstack/testkit/cloudlogging"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
)

// fakeLogging is an in-process LoggingServiceV2 on a loopback port: it records every
// request and answers as the test tells it to.
type fakeLogging struct {
	loggingpb.UnimplementedLoggingServiceV2Server
	addr    string
	discard bool // keep nothing: for benchmarks

	mu       sync.Mutex // guards requests, types and answer
	requests []*loggingpb.WriteLogEntriesRequest
	types    map[string]int // the requests' content types
	answer   func(*loggingpb.WriteLogEntriesRequest) error
}

func startFake(t testing.TB) *fakeLogging {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeLogging{addr: ln.Addr().String()}
	srv := grpc.NewServer(grpc.MaxRecvMsgSize(16 << 20))
	loggingpb.RegisterLoggingServiceV2Server(srv, f)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return f
}

func (f *fakeLogging) WriteLogEntries(ctx context.Context, req *loggingpb.WriteLogEntriesRequest) (*loggingpb.WriteLogEntriesResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	f.mu.Lock()
	answer := f.answer
	if f.types == nil {
		f.types = map[string]int{}
	}
	f.types[strings.Join(md.Get("content-type"), ",")]++
	f.mu.Unlock()
	if answer != nil {
		if err := answer(req); err != nil {
			return nil, err
		}
	}
	if !f.discard {
		f.mu.Lock()
		f.requests = append(f.requests, proto.Clone(req).(*loggingpb.WriteLogEntriesRequest))
		f.mu.Unlock()
	}
	return &loggingpb.WriteLogEntriesResponse{}, nil
}

func (f *fakeLogging) DeleteLog(context.Context, *loggingpb.DeleteLogRequest) (*emptypb.Empty, error) {
	return &emptypb.Empty{}, nil
}

func (f *fakeLogging) setAnswer(a func(*loggingpb.WriteLogEntriesRequest) error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.answer = a
}

// entries is everything written, in order, with the request's defaults applied as Cloud
// Logging applies them: resource and log name where the entry has none, labels merged
// under the entry's own.
func (f *fakeLogging) entries() []*loggingpb.LogEntry {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*loggingpb.LogEntry
	for _, r := range f.requests {
		for _, e := range r.Entries {
			out = append(out, cloudlogging.Stored(r, e))
		}
	}
	return inRecordOrder(out)
}

// inRecordOrder puts entries back in the order of their records: a flush sends a chunk's
// entries in one request per resource, labels and log name, and the insertId
// (<chunk>-<index>) says where each came from. A chunk delivered again (a retry) counts as
// another; chunks keep the order they first appeared in; an entry with an id of its own
// stays after the one before it.
func inRecordOrder(es []*loggingpb.LogEntry) []*loggingpb.LogEntry {
	type delivery struct {
		chunk string
		n     int
	}
	type key struct{ delivery, index int }
	order := map[delivery]int{}
	times := map[string]int{} // how often each insertId was seen
	keys := make(map[*loggingpb.LogEntry]key, len(es))
	var last key
	for _, e := range es {
		c, i, ok := strings.Cut(e.InsertId, "-")
		n, err := strconv.Atoi(i)
		if ok && err == nil && len(c) == 16 {
			d := delivery{c, times[e.InsertId]}
			times[e.InsertId]++
			if _, seen := order[d]; !seen {
				order[d] = len(order)
			}
			last = key{order[d], n}
		}
		keys[e] = last
	}
	out := slices.Clone(es)
	slices.SortStableFunc(out, func(a, b *loggingpb.LogEntry) int {
		ka, kb := keys[a], keys[b]
		return cmp.Or(cmp.Compare(ka.delivery, kb.delivery), cmp.Compare(ka.index, kb.index))
	})
	return out
}

// fakeMetadata answers as the GKE metadata server does, through GCE_METADATA_HOST.
func fakeMetadata(t *testing.T, attrs map[string]string) {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Metadata-Flavor") != "Google" {
			http.Error(w, "no flavor", http.StatusForbidden)
			return
		}
		path := strings.TrimPrefix(r.URL.Path, "/computeMetadata/v1/")
		v, ok := attrs[path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Metadata-Flavor", "Google")
		_, _ = w.Write([]byte(v))
	}))
	t.Cleanup(srv.Close)
	t.Setenv("GCE_METADATA_HOST", strings.TrimPrefix(srv.URL, "http://"))
}
