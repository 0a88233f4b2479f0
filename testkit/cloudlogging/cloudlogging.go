// Package cloudlogging is what the tests' Cloud Logging stand-ins share: how the service
// applies a request's defaults to the entries it stores.
package cloudlogging

import (
	"strings"

	"cloud.google.com/go/logging/apiv2/loggingpb"
	"google.golang.org/protobuf/proto"
)

// Stored is e as Cloud Logging stores it from req: the request's resource and log name where
// the entry has none, and the request's labels merged under the entry's own. e is not changed.
func Stored(req *loggingpb.WriteLogEntriesRequest, e *loggingpb.LogEntry) *loggingpb.LogEntry {
	out := proto.Clone(e).(*loggingpb.LogEntry)
	if out.Resource == nil {
		out.Resource = req.Resource
	}
	if out.LogName == "" {
		out.LogName = req.LogName
	}
	if len(req.Labels) > 0 && out.Labels == nil {
		out.Labels = make(map[string]string, len(req.Labels))
	}
	for k, v := range req.Labels {
		if _, own := out.Labels[k]; !own {
			out.Labels[k] = v
		}
	}
	return out
}

// Splits puts split entries (LogEntry.split) back together, as Cloud Logging's console
// shows them: one text, the parts' in index order. The zero value is ready; it is not safe
// for concurrent use.
type Splits struct {
	groups map[string][]string // parts by index, by the group's uid
}

// Add takes an entry's text payload. It returns the text and true for an entry that was not
// split, and for the part that completes its group, the group's whole text.
func (s *Splits) Add(e *loggingpb.LogEntry) (string, bool) {
	sp := e.GetSplit()
	if sp == nil {
		return e.GetTextPayload(), true
	}
	if s.groups == nil {
		s.groups = map[string][]string{}
	}
	parts := s.groups[sp.Uid]
	if parts == nil {
		parts = make([]string, sp.TotalSplits)
	}
	if int(sp.Index) < len(parts) {
		parts[sp.Index] = e.GetTextPayload()
	}
	s.groups[sp.Uid] = parts
	for _, p := range parts {
		if p == "" {
			return "", false
		}
	}
	delete(s.groups, sp.Uid) // a retry's copy of the group makes a whole one again
	return strings.Join(parts, ""), true
}
