package stackdriver

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"cloud.google.com/go/logging/apiv2/loggingpb"
	"github.com/googleapis/gax-go/v2"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/trailstack/trailstack/core"
)

// outcome is what an answer to WriteLogEntries means for the flush.
type outcome int

const (
	written       outcome = iota // every entry is stored
	partlyRefused                // partial_success: the others are stored, the ones named never will be
	refusedWhole                 // INVALID_ARGUMENT naming no entry: one bad entry cost the rest
	unanswered                   // no answer in time: the service hangs, back off as from a hung destination
	pushedBack                   // RESOURCE_EXHAUSTED: a quota is spent, keep to the service's pace
	retryable                    // anything else: RETRY, and Fluent Bit's scheduler decides when
)

// classify reads the API's answer to one request, the one place that does (docs/behaviour.md's
// outcome table). cancelled is a flush stopped at shutdown, whose deadline says nothing about
// the service. The error comes back with what to check when the fix is the operator's.
func classify(err error, cancelled bool) (outcome, error) {
	if err == nil {
		return written, nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return retryable, err
	}
	switch st.Code() {
	case codes.InvalidArgument:
		if partialErrors(err) != nil {
			return partlyRefused, err
		}
		return refusedWhole, err
	case codes.DeadlineExceeded:
		if !cancelled {
			return unanswered, err
		}
	case codes.ResourceExhausted:
		return pushedBack, fmt.Errorf("%w (a quota is spent: this output waits as the service asks)", err)
	case codes.Unauthenticated, codes.PermissionDenied:
		return retryable, fmt.Errorf("%w (check the node's service account or Workload Identity has roles/logging.logWriter)", err)
	case codes.NotFound:
		return retryable, fmt.Errorf("%w (check project_id)", err)
	}
	return retryable, err
}

// retryDelay is the wait a refusal asks for (google.rpc.RetryInfo), 0 if it names none.
func retryDelay(err error) time.Duration {
	for _, d := range status.Convert(err).Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			return ri.GetRetryDelay().AsDuration()
		}
	}
	return 0
}

func partialErrors(err error) *loggingpb.WriteLogEntriesPartialErrors {
	for _, d := range status.Convert(err).Details() {
		if pe, ok := d.(*loggingpb.WriteLogEntriesPartialErrors); ok && len(pe.LogEntryErrors) > 0 {
			return pe
		}
	}
	return nil
}

// write sends one request, synchronously: the flush answers only when Cloud Logging has.
// When the service refuses the request as a whole, one bad entry must not cost the others:
// the request is split in halves and each half sent again, down to single entries, so that
// only the entries refused on their own are dropped. A chunk of n entries with one bad entry
// takes about 2·log2(n) more requests.
func (s *sink) write(ctx context.Context, req *loggingpb.WriteLogEntriesRequest) core.Result {
	// No retries inside the client: a failed flush answers RETRY at once and Fluent Bit's
	// scheduler, which keeps the chunk, decides when to try again.
	// Except after a pushback: then the flush waits with the output's others, and tries
	// again as the service asks, within its deadline.
	var what outcome
	var err error
	// The entries as bytes (wire.go), sent from a buffer of the sink's pool; where they
	// cannot be (protobuf refuses an entry), the request as it is, for the client to refuse.
	buf, _ := s.wires.Get().(*[]byte)
	if buf == nil {
		buf = new([]byte)
	}
	w, werr := wireRequest(req, *buf)
	*buf = w.entries
	send, opts := w.req, []gax.CallOption{gax.WithRetry(nil), gax.WithGRPCOptions(grpc.ForceCodecV2(w))}
	if werr != nil {
		send, opts = req, opts[:1]
	}
	// gRPC may still be reading the bytes of a call that ended without the service's
	// answer to all of them (a timeout, a pushback): the buffer goes back to the pool only
	// after an answer that shows every byte arrived.
	arrived := true
	defer func() {
		if arrived {
			s.wires.Put(buf)
		}
	}()
	for what = pushedBack; what == pushedBack; {
		if werr := s.pacer.Wait(ctx); werr != nil {
			return core.Result{Status: core.Retry, Err: werr}
		}
		start := time.Now()
		_, rerr := s.client.WriteLogEntries(ctx, send, opts...)
		s.met.RequestDuration.Observe(time.Since(start).Seconds())
		s.met.Requests(status.Code(rerr).String()).Inc()
		what, err = classify(rerr, errors.Is(ctx.Err(), context.Canceled))
		arrived = arrived && (what == written || what == partlyRefused)
		if what == pushedBack {
			s.pacer.Pushed(err, retryDelay(rerr))
		} else {
			s.pacer.Done()
		}
	}
	switch what {
	case written:
		s.backoff.Succeeded()
		return core.Result{Status: core.Delivered}
	case partlyRefused:
		pe := partialErrors(err)
		first := slices.Min(slices.Collect(maps.Keys(pe.LogEntryErrors)))
		s.logRefused(len(pe.LogEntryErrors), len(req.Entries), fmt.Sprintf("entry %s: %s", req.Entries[first].GetInsertId(), pe.LogEntryErrors[first].GetMessage()))
		s.met.Rejected.Add(float64(len(pe.LogEntryErrors)))
		return core.Result{Status: core.Delivered, Refused: len(pe.LogEntryErrors)}
	case refusedWhole:
		return s.writeHalves(ctx, req, err)
	case unanswered:
		// The flushes queued behind this one answer at once for a while instead of each
		// waiting out the timeout.
		s.backoff.Failed(err, true)
	}
	return core.Result{Status: core.Retry, Err: err}
}

// writeHalves sends a request refused as a whole as two, or drops its one entry.
func (s *sink) writeHalves(ctx context.Context, req *loggingpb.WriteLogEntriesRequest, err error) core.Result {
	if len(req.Entries) == 1 {
		s.logRefused(1, 1, fmt.Sprintf("entry %s: %v", req.Entries[0].InsertId, status.Convert(err).Message()))
		s.met.Rejected.Inc()
		return core.Result{Status: core.Delivered, Refused: 1}
	}
	var refused int
	half := len(req.Entries) / 2
	for _, part := range [][]*loggingpb.LogEntry{req.Entries[:half], req.Entries[half:]} {
		sub := &loggingpb.WriteLogEntriesRequest{LogName: req.LogName, Resource: req.Resource, Labels: req.Labels, PartialSuccess: true, Entries: part}
		res := s.write(ctx, sub)
		if res.Status != core.Delivered {
			return res
		}
		refused += res.Refused
	}
	return core.Result{Status: core.Delivered, Refused: refused}
}

// logRefused says which entries Cloud Logging refused, at most once per interval.
func (s *sink) logRefused(n, of int, first string) {
	if ok, more := s.refused.Allow(); ok {
		s.log.Errorf("Cloud Logging refused %d of %d entries of a request, dropped (the rest are written); first: %s (%d such lines held back in the last %v)", n, of, first, more, s.refused.Interval)
	}
}
