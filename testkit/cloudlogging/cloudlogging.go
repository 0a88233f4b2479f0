// Package cloudlogging is what the tests' Cloud Logging stand-ins share: how the service
// applies a request's defaults to the entries it stores.
package cloudlogging

import (
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
