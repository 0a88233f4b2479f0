// Package testsink is a destination for the plugin's own tests, built into the .so only with
// the trailstack_testsink tag: it appends what it receives to a file, fsynced before it
// answers, and can be told to panic, to ask for retries, or to be slow.
package testsink

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/trailstack/trailstack/core"
	"github.com/trailstack/trailstack/record"
)

type sink struct {
	panicTag string
	delay    time.Duration

	mu         sync.Mutex // guards f and retryFirst
	f          *os.File
	retryFirst int
}

// Kind is the test destination, under the sink name "test".
var Kind = core.Kind{Name: "test", Parse: func(p *core.Parser) core.Config {
	c := &config{
		path:       p.String("test_out", ""),
		panicTag:   p.String("test_panic_tag", ""),
		retryFirst: p.Int("test_retry_first", 0, 0, 1000),
		delay:      p.Duration("test_delay", 0, 0, time.Hour),
	}
	if c.path == "" {
		p.Fail("test_out", "required")
	}
	return c
}}

type config struct {
	path, panicTag string
	retryFirst     int
	delay          time.Duration
}

func (c *config) Build(core.Env) (core.Sink, error) {
	f, err := os.OpenFile(c.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, core.KeyError("test_out", "%v", err)
	}
	return &sink{panicTag: c.panicTag, delay: c.delay, f: f, retryFirst: c.retryFirst}, nil
}

// Line is what the sink writes for a record: tag, time and the record's log line (or
// message), quoted, one per line.
func Line(tag string, r *record.Record) string {
	text := "-"
	for _, key := range []string{"log", "message", "msg"} {
		if v, ok := r.Lookup(key); ok {
			if t, ok := v.Bytes(); ok {
				text = string(t)
				break
			}
		}
	}
	return fmt.Sprintf("%s\t%d.%09d\t%s\n", tag, r.Sec, r.Nsec, strconv.Quote(text))
}

func (s *sink) Deliver(ctx context.Context, b *core.Batch) core.Result {
	if s.panicTag != "" && strings.Contains(b.Tag, s.panicTag) {
		panic("testsink: asked to panic on tag " + b.Tag)
	}
	if s.delay > 0 {
		select {
		case <-time.After(s.delay):
		case <-ctx.Done():
			return core.Result{Status: core.Retry, Err: ctx.Err()}
		}
	}
	var sb strings.Builder
	for i := range b.Records {
		sb.WriteString(Line(b.Tag, &b.Records[i]))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.retryFirst > 0 {
		s.retryFirst--
		return core.Result{Status: core.Retry, Err: fmt.Errorf("testsink: asked to retry")}
	}
	if _, err := s.f.WriteString(sb.String()); err != nil {
		return core.Result{Status: core.Retry, Err: err}
	}
	if err := s.f.Sync(); err != nil {
		return core.Result{Status: core.Retry, Err: err}
	}
	return core.Result{Status: core.Delivered}
}

func (s *sink) Close() error { return s.f.Close() }
