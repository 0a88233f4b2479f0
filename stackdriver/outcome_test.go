package stackdriver

import (
	"context"
	"errors"
	"strings"
	"testing"

	"cloud.google.com/go/logging/apiv2/loggingpb"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Every answer the API can give, read in the one place that reads them.
func TestClassify(t *testing.T) {
	partial, err := status.New(codes.InvalidArgument, "some entries invalid").WithDetails(&loggingpb.WriteLogEntriesPartialErrors{
		LogEntryErrors: map[int32]*rpcstatus.Status{1: {Code: int32(codes.InvalidArgument), Message: "bad"}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name      string
		err       error
		cancelled bool
		want      outcome
		hint      string
	}{
		{"ok", nil, false, written, ""},
		{"partial success", partial.Err(), false, partlyRefused, ""},
		{"invalid, naming no entry", status.Error(codes.InvalidArgument, "bad request"), false, refusedWhole, ""},
		{"no answer in time", status.Error(codes.DeadlineExceeded, "slow"), false, unanswered, ""},
		{"deadline of a flush cancelled at shutdown", status.Error(codes.DeadlineExceeded, "slow"), true, retryable, ""},
		{"unavailable", status.Error(codes.Unavailable, "down"), false, retryable, ""},
		{"quota", status.Error(codes.ResourceExhausted, "quota"), false, pushedBack, "a quota is spent"},
		{"no credentials yet", status.Error(codes.Unauthenticated, "no token"), false, retryable, "roles/logging.logWriter"},
		{"no permission", status.Error(codes.PermissionDenied, "denied"), false, retryable, "roles/logging.logWriter"},
		{"no such project", status.Error(codes.NotFound, "project"), false, retryable, "check project_id"},
		{"not a gRPC status", errors.New("dial tcp: refused"), false, retryable, ""},
		{"context cancelled", context.Canceled, true, retryable, ""},
	} {
		got, err := classify(c.err, c.cancelled)
		if got != c.want {
			t.Errorf("%s: outcome %d, want %d", c.name, got, c.want)
		}
		if (c.err == nil) != (err == nil) || c.hint != "" && !strings.Contains(err.Error(), c.hint) {
			t.Errorf("%s: error %v, want one saying %q", c.name, err, c.hint)
		}
	}
}
