// Command fakelogging is a local stand-in for Cloud Logging for the demo and the benchmarks:
// a LoggingServiceV2 gRPC server on loopback that counts the entries written to it,
// optionally prints them, and exits once it has the number it was told to expect.
//
//	fakelogging -expect N [-print] [-refuse TEXT] [-rest DIR]   prints "listening ADDR"
//
// With -rest, it also serves what Fluent Bit's own C out_stackdriver talks to, for the
// benchmarks that run it beside trailstack: the REST entries.write endpoint over TLS
// (a throwaway certificate in DIR; the engine is told not to verify it) and a GCE metadata
// server handing out a token. It then prints "rest ADDR" and "metadata ADDR" too; both
// kinds of request count towards -expect.
//
// With -refuse, a request holding an entry whose payload contains TEXT is refused as a whole
// (INVALID_ARGUMENT with no per-entry errors), as the service refuses a malformed request.
//
// With -sample DIR (the demo), it checks the entries against the container logs there
// (package testkit/sample), split entries put back together: it prints "complete" once every
// line has arrived, serves on until SIGTERM, SIGINT or -timeout, then prints "sample: " and
// the count, and exits 1 unless every line arrived exactly once.
package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"cloud.google.com/go/logging/apiv2/loggingpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/trailstack/trailstack/testkit/cloudlogging"
	"github.com/trailstack/trailstack/testkit/sample"
	"github.com/trailstack/trailstack/testkit/testpki"
)

type server struct {
	loggingpb.UnimplementedLoggingServiceV2Server
	print   bool
	refuse  string
	expect  int64
	entries atomic.Int64
	reqs    atomic.Int64
	done    chan struct{}
	once    sync.Once
	tally   *sample.Tally // with -sample

	mu       sync.Mutex // guards stdout (one entry per line) and splits
	splits   cloudlogging.Splits
	complete bool // "complete" printed
}

func (s *server) WriteLogEntries(_ context.Context, r *loggingpb.WriteLogEntriesRequest) (*loggingpb.WriteLogEntriesResponse, error) {
	s.reqs.Add(1)
	if s.refuse != "" {
		for _, e := range r.Entries {
			b, _ := e.GetJsonPayload().MarshalJSON()
			if strings.Contains(e.GetTextPayload(), s.refuse) || strings.Contains(string(b), s.refuse) {
				return nil, status.Error(codes.InvalidArgument, "refused: the request holds an entry with "+s.refuse)
			}
		}
	}
	if s.print {
		s.mu.Lock()
		for _, e := range r.Entries {
			e = cloudlogging.Stored(r, e)
			payload := e.GetTextPayload()
			if j := e.GetJsonPayload(); j != nil {
				b, _ := j.MarshalJSON()
				payload = string(b)
			}
			l := e.Resource.GetLabels()
			// One entry a line: a joined stack trace's line ends are shown as \n.
			payload = strings.ReplaceAll(payload, "\n", `\n`)
			fmt.Printf("  %s %-8s %s %s/%s/%s %s: %.100s\n", e.Timestamp.AsTime().Format(time.RFC3339Nano), e.Severity,
				e.Resource.GetType(), l["namespace_name"], l["pod_name"], l["container_name"], e.LogName, payload)
		}
		s.mu.Unlock()
	}
	if s.tally != nil {
		s.tallyEntries(r)
	}
	s.count(len(r.Entries))
	return &loggingpb.WriteLogEntriesResponse{}, nil
}

// tallyEntries counts a request's entries against the sample: an entry's time stamp says
// which line it starts with, its text (or JSON) holds the lines joined to it; the parts of a
// split entry count once, with their whole text, when the last has arrived.
func (s *server) tallyEntries(r *loggingpb.WriteLogEntriesRequest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range r.Entries {
		text, whole := s.splits.Add(e)
		if !whole {
			continue
		}
		if j := e.GetJsonPayload(); j != nil {
			b, _ := j.MarshalJSON()
			text = string(b)
		}
		s.tally.Add(e.GetTimestamp().AsTime(), text)
	}
	if !s.complete && s.tally.Count().Complete() {
		s.complete = true
		fmt.Println("complete")
	}
}

func (s *server) count(n int) {
	if t := s.entries.Add(int64(n)); s.expect > 0 && t >= s.expect {
		s.once.Do(func() { close(s.done) })
	}
}

// writeREST is entries.write as the REST API takes it: a JSON request whose entries are
// counted (their content is not checked; the gRPC path is the one the tests inspect).
func (s *server) writeREST(w http.ResponseWriter, r *http.Request) {
	s.reqs.Add(1)
	var req struct {
		Entries []json.RawMessage `json:"entries"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.count(len(req.Entries))
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, "{}")
}

// metadata answers what out_stackdriver asks a GCE metadata server at start.
func metadata(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Metadata-Flavor", "Google")
	switch p := r.URL.Path; {
	case p == "/computeMetadata/v1/project/project-id":
		io.WriteString(w, "bench")
	case p == "/computeMetadata/v1/instance/zone":
		io.WriteString(w, "projects/1/zones/local-a")
	case p == "/computeMetadata/v1/instance/id":
		io.WriteString(w, "1")
	case strings.HasSuffix(p, "/token"):
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"access_token":"bench","expires_in":3600,"token_type":"Bearer"}`)
	default:
		http.NotFound(w, r)
	}
}

func serveREST(s *server, dir string) error {
	pki, err := testpki.Generate(dir, "localhost")
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v2/entries:write", s.writeREST)
	go http.Serve(tls.NewListener(ln, pki.Server), mux)
	md, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go http.Serve(md, http.HandlerFunc(metadata))
	fmt.Printf("rest %s\nmetadata %s\n", ln.Addr(), md.Addr())
	return nil
}

func main() {
	expect := flag.Int64("expect", 0, "exit after this many entries (0: never)")
	print := flag.Bool("print", false, "print each entry")
	refuse := flag.String("refuse", "", "refuse every request holding an entry with this text")
	timeout := flag.Duration("timeout", 10*time.Minute, "give up after this long")
	rest := flag.String("rest", "", "also serve REST and a metadata server, with a certificate in this directory")
	sampleDir := flag.String("sample", "", "check what arrives against the container logs in this directory")
	flag.Parse()
	var tally *sample.Tally
	if *sampleDir != "" {
		var err error
		if tally, err = sample.Open(*sampleDir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	s := &server{print: *print, refuse: *refuse, expect: *expect, done: make(chan struct{}), tally: tally}
	srv := grpc.NewServer(grpc.MaxRecvMsgSize(16 << 20))
	loggingpb.RegisterLoggingServiceV2Server(srv, s)
	go srv.Serve(ln)
	if *rest != "" {
		if err := serveREST(s, *rest); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	fmt.Printf("listening %s\n", ln.Addr())
	select {
	case <-s.done:
	case <-stop:
	case <-time.After(*timeout):
	}
	srv.GracefulStop()
	fmt.Printf("received %d entries in %d requests\n", s.entries.Load(), s.reqs.Load())
	if tally != nil {
		c := tally.Count()
		fmt.Printf("sample: %s\n", c)
		if !c.Complete() {
			os.Exit(1)
		}
	}
	if *expect > 0 && s.entries.Load() < *expect {
		os.Exit(1)
	}
}
