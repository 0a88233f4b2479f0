package core

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/trailstack/trailstack/metrics"
)

// startRetry is how often an output that could not start tries again.
const startRetry = 30 * time.Second

// pending is an output that could not start. Every flush answers RETRY, so its records wait
// in Fluent Bit's buffer, while the instance's failure log says why once a minute and
// trailstack_output_ready says 0; where start can heal, it tries again every startRetry and,
// once started, delivers.
type pending struct {
	start func() (Sink, error) // nil: only a restart can change its configuration
	clock Clock
	m     *metrics.Instance

	mu    sync.Mutex // guards sink, err and next
	sink  Sink
	err   error
	next  time.Time
	tries sync.Mutex // held while start runs: other flushes answer at once
}

func notStarted(err error, start func() (Sink, error), log *Logger, m *metrics.Instance) *pending {
	how := "fix it and restart the pod"
	if start != nil {
		how = fmt.Sprintf("trying again every %v", startRetry)
	}
	log.Errorf("output not started, its records wait in Fluent Bit's buffer (%s): %v", how, err)
	m.Ready.Set(0)
	return &pending{start: start, m: m, err: err}
}

func (p *pending) Deliver(ctx context.Context, b *Batch) Result {
	s, err := p.started()
	if s == nil {
		return Result{Status: Retry, Err: fmt.Errorf("output not started: %w", err)}
	}
	return s.Deliver(ctx, b)
}

// started returns the sink once it has started, trying when it is time.
func (p *pending) started() (Sink, error) {
	p.mu.Lock()
	s, err, due := p.sink, p.err, p.start != nil && !p.clock.Now().Before(p.next)
	p.mu.Unlock()
	if s != nil || !due || !p.tries.TryLock() {
		return s, err
	}
	defer p.tries.Unlock()
	s, err = p.start()
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		p.err, p.next = err, p.clock.Now().Add(startRetry)
		return nil, err
	}
	p.sink = s
	p.m.Ready.Set(1)
	return s, nil
}

func (p *pending) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.sink != nil {
		return p.sink.Close()
	}
	return nil
}
