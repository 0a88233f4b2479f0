package syslog

import (
	"context"
	"strconv"
	"testing"

	"github.com/leodido/go-syslog/v4/rfc5424"

	"github.com/trailstack/trailstack/core"
	"github.com/trailstack/trailstack/record"
	"github.com/trailstack/trailstack/testkit/fixture"
)

// BenchmarkFormat20k formats kube-20k records with the default (Papertrail) fields; ns/op
// and allocs/op are per record.
func BenchmarkFormat20k(b *testing.B) {
	recs := load20k(b)[:5000]
	f := newFormatter(b, core.MapGetter{})
	s := f.newScratch()
	buf := make([]byte, 0, 8<<20)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; {
		buf = buf[:0]
		for j := range recs {
			if i++; i > b.N {
				break
			}
			buf = f.appendFrame(buf, &recs[j].rec, recs[j].tag, s)
		}
	}
}

// BenchmarkGoSyslogBuilder20k builds the same messages with go-syslog's rfc5424 builder,
// the fields looked up the same way.
func BenchmarkGoSyslogBuilder20k(b *testing.B) {
	recs := load20k(b)[:5000]
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r := &recs[i%len(recs)].rec
		m := &rfc5424.SyslogMessage{}
		m.SetPriority(14)
		m.SetVersion(1)
		m.SetTimestamp(r.Time().UTC().Format("2006-01-02T15:04:05.000000Z"))
		m.SetHostname(fixture.Text(r, "kubernetes", "host"))
		m.SetAppname(fixture.Text(r, "kubernetes", "namespace_name") + "/" + fixture.Text(r, "kubernetes", "container_name"))
		m.SetProcID(fixture.Text(r, "kubernetes", "pod_name"))
		m.SetMsgID(fixture.Text(r, "stream"))
		m.SetMessage(fixture.Text(r, "log"))
		if _, err := m.String(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDeliverTLS20k sends kube-20k chunks through Deliver to an in-process TLS receiver;
// ns/op is per record and includes the receiver's work, on the same two cores.
func BenchmarkDeliverTLS20k(b *testing.B) {
	pki := newPKI(b, "localhost")
	r := startReceiver(b, &receiver{tlsCfg: pki.Server, discard: true})
	s := newSink(b, core.MapGetter{"address": r.addr(), "ca_file": pki.CAFile})
	batch := fixture.Batch(b, fixture.BenchSet(b, "kube-20k")[0])
	b.ResetTimer()
	for i := 0; i < b.N; i += len(batch.Records) {
		if res := s.Deliver(context.Background(), batch); res.Status != core.Delivered {
			b.Fatal(res.Err)
		}
	}
}

// BenchmarkFormatShapes formats 2 MB chunks of each record shape with the default fields;
// ns/op is per record.
func BenchmarkFormatShapes(b *testing.B) {
	for _, shape := range fixture.Shapes {
		b.Run(shape, func(b *testing.B) {
			batch, _ := fixture.ShapeBatch(shape, 2<<20)
			f := newFormatter(b, core.MapGetter{})
			s := f.newScratch()
			buf := make([]byte, 0, 8<<20)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				j := i % len(batch.Records)
				if j == 0 {
					buf = buf[:0]
				}
				buf = f.appendFrame(buf, &batch.Records[j], batch.Tag, s)
			}
		})
	}
}

// BenchmarkPasses decodes and formats kube-20k chunks that have just been written into
// memory after the caches were filled with other data, as the engine hands them over: in
// three passes, as a flush does (decode every record, read every log line, format every
// record), and in one (each record decoded and formatted at once). ns/rec is per record. It
// asks whether the three passes over a chunk larger than the core's cache cost more than
// one (docs/benchmarks.md).
func BenchmarkPasses(b *testing.B) {
	var batches []*core.Batch
	for _, f := range fixture.BenchSet(b, "kube-20k") {
		batches = append(batches, fixture.Batch(b, f))
	}
	for _, passes := range []int{3, 1} {
		b.Run(strconv.Itoa(passes), func(b *testing.B) {
			f := newFormatter(b, core.MapGetter{})
			s := f.newScratch()
			buf := make([]byte, 0, 8<<20)
			other := make([]byte, 16<<20) // more than the machine's caches
			chunk := make([]byte, 4<<20)
			recs := make([]record.Record, 0, 10000)
			var lines, n int
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				batch := batches[i%len(batches)]
				b.StopTimer()
				for j := 0; j < len(other); j += 64 {
					other[j]++
				}
				c := chunk[:copy(chunk, batch.Data)]
				b.StartTimer()
				buf = buf[:0]
				var d record.Decoder
				d.Reset(c)
				if passes == 1 {
					for d.Next() {
						buf = f.appendFrame(buf, d.Record(), batch.Tag, s)
						n++
					}
					continue
				}
				recs = recs[:0]
				for d.Next() {
					recs = append(recs, *d.Record())
				}
				for j := range recs {
					if l, _ := recs[j].LogAndStream(); len(l) > 0 {
						lines++
					}
				}
				for j := range recs {
					buf = f.appendFrame(buf, &recs[j], batch.Tag, s)
					n++
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/rec")
			if passes == 3 && lines == 0 {
				b.Fatal("no log lines")
			}
		})
	}
}

// load20k reads the records of the kube-20k benchmark set, outside the repository.
func load20k(b *testing.B) []fixtureRecord {
	var out []fixtureRecord
	for _, f := range fixture.BenchSet(b, "kube-20k") {
		batch := fixture.Batch(b, f)
		for _, r := range batch.Records {
			out = append(out, fixtureRecord{batch.Tag, r})
		}
	}
	return out
}
