package core

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// flakyKind builds a sink only once start is allowed, as a metadata server that comes up.
type flakyKind struct {
	sink  *fakeSink
	ready bool
	envOK bool // the "address" key, from the environment, parses
}

func (k *flakyKind) kind() Kind {
	return Kind{Name: "fake", Parse: func(p *Parser) Config {
		p.FromEnv("address")
		if !k.envOK {
			p.Fail("address", "does not parse")
		}
		return k
	}}
}

func (k *flakyKind) Build(Env) (Sink, error) {
	if !k.ready {
		return nil, errors.New("metadata server not reachable")
	}
	return k.sink, nil
}

// An output that cannot start does not fail Init: its flushes answer RETRY, it says why,
// its ready series is 0, and once it can start it delivers.
func TestOutputThatCannotStartWaits(t *testing.T) {
	k := &flakyKind{sink: &fakeSink{}, envOK: true}
	var log strings.Builder
	in, err := newInstance("trailstack.0", MapGetter{"sink": "fake"}, []Kind{k.kind()}, NewLogger("trailstack.0", &log))
	if err != nil {
		t.Fatalf("Init failed: %v", err)
	}
	now := time.Unix(1_800_000_000, 0)
	in.sink.(*pending).clock = func() time.Time { return now }
	if st := in.Flush(chunkOf("a"), "t"); st != Retry || testutil.ToFloat64(in.metrics.Ready) != 0 {
		t.Fatalf("status %v, ready %v", st, testutil.ToFloat64(in.metrics.Ready))
	}
	k.ready = true
	if st := in.Flush(chunkOf("a"), "t"); st != Retry {
		t.Fatalf("tried again before %v: %v", startRetry, st)
	}
	now = now.Add(startRetry)
	if st := in.Flush(chunkOf("b"), "t"); st != Delivered || testutil.ToFloat64(in.metrics.Ready) != 1 || strings.Join(k.sink.logs, ",") != "b" {
		t.Fatalf("status %v, ready %v, arrived %v", st, testutil.ToFloat64(in.metrics.Ready), k.sink.logs)
	}
	if !strings.Contains(log.String(), "output not started, its records wait in Fluent Bit's buffer (trying again every 30s): metadata server not reachable") {
		t.Errorf("log:\n%s", log.String())
	}
	in.Close()

	// A value from the environment that does not parse: not started until a restart.
	k2 := &flakyKind{sink: &fakeSink{}, ready: true}
	in2, err := newInstance("trailstack.1", MapGetter{"sink": "fake"}, []Kind{k2.kind()}, NewLogger("trailstack.1", &log))
	if err != nil {
		t.Fatalf("Init failed: %v", err)
	}
	defer in2.Close()
	if st := in2.Flush(chunkOf("a"), "t"); st != Retry || len(k2.sink.logs) != 0 {
		t.Fatalf("status %v, arrived %v", st, k2.sink.logs)
	}
	if !strings.Contains(log.String(), `(fix it and restart the pod): config key "address": does not parse`) {
		t.Errorf("log:\n%s", log.String())
	}
}
