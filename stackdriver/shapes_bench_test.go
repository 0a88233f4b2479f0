package stackdriver

import (
	"context"
	"net"
	"runtime"
	"runtime/metrics"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"cloud.google.com/go/logging/apiv2/loggingpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"

	"github.com/trailstack/trailstack/core"
	"github.com/trailstack/trailstack/testkit/fixture"
)

// BenchmarkShapes delivers a 2 MB chunk of each record shape through the real client to an
// in-process server that reads the bytes but decodes nothing, so that the heap figures are
// the plugin's (and its client's) own. ns/op is per record. Reported besides:
//   - alloc-MiB/flush: every byte a flush allocates, from runtime/metrics; nothing of it
//     outlives the flush but the pooled scratch, so it bounds what one worker holds;
//   - retained-MiB: the heap in use after the flushes and a GC (the pools, the client);
//   - requests/flush;
//   - cpu-ns/record: the process's CPU (getrusage), the server's reading included, which
//     unlike ns/op does not count the time a flush waits for the server.
func BenchmarkShapes(b *testing.B) {
	for _, shape := range fixture.Shapes {
		b.Run(shape, func(b *testing.B) {
			f, reqs := startDiscardFake(b)
			s := newSink(b, f, nil)
			batch, _ := fixture.ShapeBatch(shape, 2<<20)
			n := len(batch.Records)
			samples := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}, {Name: "/memory/classes/heap/objects:bytes"}}
			flushes := 0
			b.ResetTimer()
			metrics.Read(samples)
			before := samples[0].Value.Uint64()
			cpu0 := cpuTime()
			for i := 0; i < b.N; i += n {
				if res := s.Deliver(context.Background(), batch); res.Status != core.Delivered {
					b.Fatal(res.Err)
				}
				flushes++
			}
			b.StopTimer()
			cpu := cpuTime() - cpu0
			metrics.Read(samples)
			allocs := samples[0].Value.Uint64() - before
			runtime.GC()
			metrics.Read(samples)
			b.ReportMetric(float64(allocs)/float64(flushes)/(1<<20), "alloc-MiB/flush")
			b.ReportMetric(float64(samples[1].Value.Uint64())/(1<<20), "retained-MiB")
			b.ReportMetric(float64(reqs())/float64(flushes), "requests/flush")
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(flushes*n), "cpu-ns/record")
		})
	}
}

// cpuTime is the process's CPU time so far, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// discardCodec takes requests off the wire without decoding them.
type discardCodec struct{ proto encoding.CodecV2 }

func (c discardCodec) Marshal(v any) (mem.BufferSlice, error) { return c.proto.Marshal(v) }
func (discardCodec) Unmarshal(mem.BufferSlice, any) error     { return nil }
func (discardCodec) Name() string                             { return "proto" }

// startDiscardFake is a LoggingServiceV2 that counts requests and keeps nothing.
func startDiscardFake(tb testing.TB) (*fakeLogging, func() int64) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	c := &countingFake{}
	srv := grpc.NewServer(grpc.MaxRecvMsgSize(16<<20), grpc.ForceServerCodecV2(discardCodec{encoding.GetCodecV2(proto.Name)}))
	loggingpb.RegisterLoggingServiceV2Server(srv, c)
	go srv.Serve(ln)
	tb.Cleanup(srv.Stop)
	return &fakeLogging{addr: ln.Addr().String()}, c.n.Load
}

type countingFake struct {
	loggingpb.UnimplementedLoggingServiceV2Server
	n atomic.Int64
}

func (c *countingFake) WriteLogEntries(context.Context, *loggingpb.WriteLogEntriesRequest) (*loggingpb.WriteLogEntriesResponse, error) {
	c.n.Add(1)
	return &loggingpb.WriteLogEntriesResponse{}, nil
}
