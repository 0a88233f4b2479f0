package stackdriver

import (
	"cloud.google.com/go/logging/apiv2/loggingpb"
	"google.golang.org/genproto/googleapis/api/monitoredres"
	"google.golang.org/protobuf/proto"

	"github.com/trailstack/trailstack/core"
)

// requestKey is what a request carries once for all its entries: their resource and pod
// labels (by their cachedPod's number; -1 for none).
type requestKey struct {
	res *monitoredres.MonitoredResource
	gen int
}

// shareLogName makes the log name most of a request's entries have the request's, and
// takes it off them; the others keep theirs.
func shareLogName(req *loggingpb.WriteLogEntriesRequest) {
	type count struct {
		name string
		n    int
	}
	var counts [4]count // a chunk has a log name or two (stdout, stderr): more are not counted
	for _, e := range req.Entries {
		for i := range counts {
			if c := &counts[i]; c.name == e.LogName || c.n == 0 {
				c.name = e.LogName
				c.n++
				break
			}
		}
	}
	best := counts[0]
	for _, c := range counts[1:] {
		if c.n > best.n {
			best = c
		}
	}
	req.LogName = best.name
	for _, e := range req.Entries {
		if e.LogName == best.name {
			e.LogName = ""
		}
	}
}

// pendingRequest is a request being filled with the entries of one requestKey.
type pendingRequest struct {
	key    requestKey
	labels map[string]string
	req    *loggingpb.WriteLogEntriesRequest
	size   int
}

// maxPending bounds the requests a flush fills at once.
const maxPending = 8

// requestFor finds the request for k's entries, opening one if there is room; nil if not.
func (s *scratch) requestFor(k requestKey, labels map[string]string) *pendingRequest {
	for i := len(s.pending) - 1; i >= 0; i-- {
		if s.pending[i].key == k {
			return &s.pending[i]
		}
	}
	if len(s.pending) == maxPending {
		return nil
	}
	s.pending = append(s.pending, pendingRequest{key: k, labels: labels,
		req: &loggingpb.WriteLogEntriesRequest{PartialSuccess: true, Resource: k.res, Labels: labels}})
	return &s.pending[len(s.pending)-1]
}

// sizeBound bounds an entry's encoded size from above without encoding it (proto.Size
// cost as much as the encoding itself, and twice that for a JSON payload's maps):
// payloadBound bounds its JSON payload and what was lifted out of it (see converter.bound).
func sizeBound(e *loggingpb.LogEntry, payloadBound int) int {
	if e.Resource != nil {
		return proto.Size(e)
	}
	n := 128 + len(e.GetTextPayload()) + len(e.LogName) + len(e.InsertId) + len(e.Trace) + len(e.SpanId) +
		len(e.ProtoReflect().GetUnknown()) // a JSON payload encoded already (appendBody)
	if e.GetJsonPayload() != nil {
		n += payloadBound
	}
	if e.HttpRequest != nil {
		n += 16 * valueOverhead // its fields' values are in payloadBound; this is their framing
	}
	for k, v := range e.Labels {
		n += len(k) + len(v) + 8
	}
	if sl := e.SourceLocation; sl != nil {
		n += len(sl.File) + len(sl.Function) + 16
	}
	if op := e.Operation; op != nil {
		n += len(op.Id) + len(op.Producer) + 8
	}
	return n
}

// cutToFit cuts an entry over the API's size limit down to size, keeping it rather than
// failing the request: a long text is cut and marked, a large JSON payload becomes its JSON
// text, cut and marked.
func cutToFit(e *loggingpb.LogEntry, size int) int {
	var text string
	switch p := e.Payload.(type) {
	case *loggingpb.LogEntry_TextPayload:
		text = p.TextPayload
	case *loggingpb.LogEntry_JsonPayload:
		// Its JSON text may be far smaller than its protobuf (a number is a byte or two of
		// text, eleven of protobuf): measure again as text before cutting.
		b, _ := p.JsonPayload.MarshalJSON()
		text = string(b)
		e.Payload = &loggingpb.LogEntry_TextPayload{TextPayload: text}
		if size = proto.Size(e); size <= entryBudget {
			return size
		}
	}
	over := size - entryBudget
	keep := len(text) - over - len(core.TruncMark) - 64
	if keep < 0 {
		keep = 0
	}
	e.Payload = &loggingpb.LogEntry_TextPayload{TextPayload: truncateUTF8(text, keep+len(core.TruncMark))}
	if n := proto.Size(e); n <= entryBudget {
		return n
	}
	// Still too big: labels or other fields fill it; keep only what identifies the entry.
	e.Labels, e.HttpRequest, e.SourceLocation, e.Operation = nil, nil, nil, nil
	return proto.Size(e)
}
