// Command fakelogging is a local stand-in for Cloud Logging for the demo and the benchmarks:
// a LoggingServiceV2 gRPC server on loopback that counts the entries written to it,
// optionally prints them, and exits once it has the number it was told to expect.
//
//	fakelogging -expect N [-print] [-refuse TEXT]   prints "listening ADDR"
//
// With -refuse, a request holding an entry whose payload contains TEXT is refused as a whole
// (INVALID_ARGUMENT with no per-entry errors), as the service refuses a malformed request.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"cloud.google.com/go/logging/apiv2/loggingpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
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
	mu      sync.Mutex // one entry per line on stdout
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
			payload := e.GetTextPayload()
			if j := e.GetJsonPayload(); j != nil {
				b, _ := j.MarshalJSON()
				payload = string(b)
			}
			// The request's resource and log name stand for entries that have none, as in
			// Cloud Logging.
			res, logName := e.Resource, e.LogName
			if res == nil {
				res = r.Resource
			}
			if logName == "" {
				logName = r.LogName
			}
			l := res.GetLabels()
			fmt.Printf("  %s %-8s %s %s/%s/%s %s: %.100s\n", e.Timestamp.AsTime().Format(time.RFC3339Nano), e.Severity,
				res.GetType(), l["namespace_name"], l["pod_name"], l["container_name"], logName, payload)
		}
		s.mu.Unlock()
	}
	if n := s.entries.Add(int64(len(r.Entries))); s.expect > 0 && n >= s.expect {
		s.once.Do(func() { close(s.done) })
	}
	return &loggingpb.WriteLogEntriesResponse{}, nil
}

func main() {
	expect := flag.Int64("expect", 0, "exit after this many entries (0: never)")
	print := flag.Bool("print", false, "print each entry")
	refuse := flag.String("refuse", "", "refuse every request holding an entry with this text")
	timeout := flag.Duration("timeout", 10*time.Minute, "give up after this long")
	flag.Parse()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	s := &server{print: *print, refuse: *refuse, expect: *expect, done: make(chan struct{})}
	srv := grpc.NewServer(grpc.MaxRecvMsgSize(16 << 20))
	loggingpb.RegisterLoggingServiceV2Server(srv, s)
	go srv.Serve(ln)
	fmt.Printf("listening %s\n", ln.Addr())
	select {
	case <-s.done:
	case <-time.After(*timeout):
	}
	srv.GracefulStop()
	fmt.Printf("received %d entries in %d requests\n", s.entries.Load(), s.reqs.Load())
	if *expect > 0 && s.entries.Load() < *expect {
		os.Exit(1)
	}
}
