package stackdriver

import (
	"strconv"

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

// split makes an entry over the API's size limit fit without losing any of it: its text (a
// JSON payload as its JSON text) goes on in parts, in order, each an entry within the limit
// with its own insertId, and LogEntry.split (uid, index, totalSplits) tells Cloud Logging
// they are one, as its console shows them. Where the entry's other fields leave too little
// room for a part (labels that alone nearly fill an entry), it is cut instead (cut).
func split(e *loggingpb.LogEntry, size int) (parts []*loggingpb.LogEntry, sizes []int, cut bool) {
	text, ok := payloadText(e)
	if !ok {
		return []*loggingpb.LogEntry{e}, []int{cutToFit(e, size)}, true
	}
	e.Payload = nil
	overhead := proto.Size(e) + len(e.InsertId) + 64 // the split and the parts' longer insertIds
	room := entryBudget - overhead
	if room < minSplitPart {
		e.Payload = &loggingpb.LogEntry_TextPayload{TextPayload: text}
		return []*loggingpb.LogEntry{e}, []int{cutToFit(e, proto.Size(e))}, true
	}
	var texts []string
	for rest := text; rest != ""; {
		n := core.RuneCut(rest, room)
		if n == 0 {
			n = min(len(rest), room) // not UTF-8 after all: cut where it falls
		}
		texts, rest = append(texts, rest[:n]), rest[n:]
	}
	base, uid := proto.Clone(e).(*loggingpb.LogEntry), e.InsertId
	for k, t := range texts {
		part := e
		if k > 0 {
			part = proto.Clone(base).(*loggingpb.LogEntry)
			part.InsertId = uid + "." + strconv.Itoa(k)
		}
		part.Payload = &loggingpb.LogEntry_TextPayload{TextPayload: t}
		part.Split = &loggingpb.LogSplit{Uid: uid, Index: int32(k), TotalSplits: int32(len(texts))}
		parts, sizes = append(parts, part), append(sizes, proto.Size(part))
	}
	return parts, sizes, false
}

// minSplitPart is the least text a split part carries: with less room than that, the
// entry's other fields are the problem, and splitting would not end.
const minSplitPart = 16 << 10

// payloadText is an entry's payload as text: its text, or its JSON payload's JSON.
func payloadText(e *loggingpb.LogEntry) (string, bool) {
	switch p := e.Payload.(type) {
	case *loggingpb.LogEntry_TextPayload:
		return p.TextPayload, true
	case *loggingpb.LogEntry_JsonPayload:
		b, err := p.JsonPayload.MarshalJSON()
		return string(b), err == nil
	}
	return "", false
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
