// Package stackdriver is trailstack's Google Cloud Logging destination: records mapped as
// GKE's own agent maps them (k8s_container), written synchronously with
// cloud.google.com/go/logging's apiv2 WriteLogEntries, with insertIds that make retries safe.
package stackdriver

import (
	"context"
	"sync"
	"time"

	logging "cloud.google.com/go/logging/apiv2"
	"cloud.google.com/go/logging/apiv2/loggingpb"
	"google.golang.org/protobuf/proto"

	"github.com/trailstack/trailstack/core"
	"github.com/trailstack/trailstack/metrics"
)

type sink struct {
	clock   core.Clock // decides whether a timestamp is too far ahead
	client  *logging.Client
	m       *mapper
	log     *core.Logger
	timeout time.Duration
	scratch sync.Pool // *scratch
	wires   sync.Pool // *[]byte: requests' entries encoded (wire.go)
	backoff core.Backoff
	pacer   core.Pacer // after RESOURCE_EXHAUSTED, one wait for the whole output
	refused core.Every // one log line per interval about refused entries
	shaped  core.Every // and about payloads sent as text or cut short
	met     *metrics.Instance
}

// Deliver maps the batch, writes it in requests under the API's size limit, and answers
// Delivered once every request succeeded (entries Cloud Logging rejected one by one are
// dropped with a log line; retrying them could never succeed).
func (s *sink) Deliver(ctx context.Context, b *core.Batch) core.Result {
	if err := s.backoff.Check("Cloud Logging"); err != nil {
		return core.Result{Status: core.Retry, Err: err}
	}
	// One deadline for the whole flush, however many requests it takes: the shutdown
	// budget in conf/ rests on that bound.
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	sc := s.scratch.Get().(*scratch)
	defer func() {
		sc.reset()
		s.scratch.Put(sc)
	}()
	now := s.clock.Now()
	var truncated, refused int
	send := func(g *pendingRequest) core.Result {
		if len(g.req.Entries) == 0 {
			return core.Result{Status: core.Delivered}
		}
		shareLogName(g.req)
		res := s.write(ctx, g.req)
		g.req, g.size = &loggingpb.WriteLogEntriesRequest{PartialSuccess: true, Resource: g.key.res, Labels: g.labels}, 0
		refused += res.Refused
		res.Refused, res.Truncated = refused, truncated
		return res
	}
	sc.startChunk(b, now, s.m.retention)
	for i := range b.Records {
		e := s.m.entry(&b.Records[i], i, b.Tag, sc, now)
		// What an entry shares with others (its resource, its pod's labels) goes once into
		// a request, whose defaults the API applies to every entry that lacks them:
		// encoding those maps per entry cost more than all the rest. So entries are
		// gathered by what they share, one request each. Not by log name: a request per
		// stream doubled the requests and the flush's wait for one string per stderr
		// line saved (shareLogName).
		k := requestKey{res: e.Resource, gen: -1}
		var labels map[string]string
		if sc.pod != nil {
			k.gen, labels = sc.pod.gen, sc.pod.labels
		}
		g := sc.requestFor(k, labels)
		if g == nil {
			// More kinds of entry than requests kept open: send them all and start again.
			for j := range sc.pending {
				if res := send(&sc.pending[j]); res.Status != core.Delivered {
					return res
				}
			}
			sc.pending = sc.pending[:0]
			g = sc.requestFor(k, labels)
		}
		e.Resource = nil // the request's
		parts, sizes := []*loggingpb.LogEntry{e}, []int{sizeBound(e, sc.conv.bound)}
		if sizes[0] > entryBudget/2 {
			if sizes[0] = proto.Size(e); sizes[0] > entryBudget {
				var cut bool
				if parts, sizes, cut = split(e, sizes[0]); cut {
					truncated++
				}
			}
		}
		for k, part := range parts {
			if g.size+sizes[k] > maxRequestBytes {
				if res := send(g); res.Status != core.Delivered {
					return res
				}
			}
			g.req.Entries = append(g.req.Entries, part)
			g.size += sizes[k] + 8
		}
	}
	if sc.textual > 0 || sc.conv.tooDeep > 0 {
		if ok, more := s.shaped.Allow(); ok {
			s.log.Warnf("chunk (tag %s): %d JSON payloads sent as their JSON text (larger than an entry may be, or past the %d values a flush converts), split into entries where longer than one; %d values nested deeper than %d levels written as null (%d such lines held back in the last %v)",
				b.Tag, sc.textual, maxFlushValues, sc.conv.tooDeep, maxDepth/2, more, s.shaped.Interval)
		}
	}
	for j := range sc.pending {
		if res := send(&sc.pending[j]); res.Status != core.Delivered {
			return res
		}
	}
	return core.Result{Status: core.Delivered, Refused: refused, Truncated: truncated}
}

func (s *sink) Close() error { return s.client.Close() }
