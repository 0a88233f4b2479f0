package stackdriver

import (
	"context"
	"testing"
	"time"

	"github.com/trailstack/trailstack/core"
	"github.com/trailstack/trailstack/testkit/fixture"
)

// BenchmarkMap20k maps kube-20k records to LogEntries; ns/op is per record.
func BenchmarkMap20k(b *testing.B) {
	f := startFake(b)
	s := newSink(b, f, nil)
	batch := fixture.Batch(b, fixture.BenchSet(b, "kube-20k")[0])
	sc := s.m.newScratch()
	now := time.Now()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%len(batch.Records) == 0 {
			sc.reset()
			sc.startChunk(batch, now, 30*24*time.Hour)
		}
		_ = s.m.entry(&batch.Records[i%len(batch.Records)], i%len(batch.Records), batch.Tag, sc, now)
	}
}

// BenchmarkDeliver20k writes kube-20k chunks through the real client to the in-process
// server; ns/op is per record and includes the server's decoding, on the same two cores.
func BenchmarkDeliver20k(b *testing.B) {
	f := startFake(b)
	f.discard = true
	s := newSink(b, f, nil)
	batch := fixture.Batch(b, fixture.BenchSet(b, "kube-20k")[0])
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += len(batch.Records) {
		if res := s.Deliver(context.Background(), batch); res.Status != core.Delivered {
			b.Fatal(res.Err)
		}
	}
}
