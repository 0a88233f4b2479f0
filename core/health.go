package core

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// health logs failures an operator can act on without one line per retried chunk: the
// first failure and the recovery always, then each cause once a minute with a count of the
// chunks it held back since.
type health struct {
	clock      Clock
	anyFailing atomic.Bool // failing, read without the lock on every successful flush

	mu      sync.Mutex // guards the rest
	failing bool
	since   time.Time
	retries int
	causes  map[string]*Every
}

// cause is an error's text without its numbers (counts, durations, addresses' ports),
// which vary from one chunk to the next.
func cause(err error) string {
	var b strings.Builder
	for _, r := range fmt.Sprint(err) {
		if r < '0' || r > '9' {
			b.WriteRune(r)
		}
	}
	return b.String()
}

func (h *health) failed(log *Logger, n int, tag string, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.retries++
	c := cause(err)
	e := h.causes[c]
	if e == nil {
		if h.causes == nil || len(h.causes) > 64 {
			h.causes = map[string]*Every{}
		}
		e = &Every{Interval: time.Minute, Clock: h.clock}
		h.causes[c] = e
	}
	allowed, held := e.Allow()
	if !h.failing {
		h.failing, h.since = true, h.clock.Now()
		h.anyFailing.Store(true)
		log.Warnf("chunk of %d records (tag %s) kept for retry: %v (the same cause is logged once a minute until a flush succeeds)", n, tag, err)
		return
	}
	if allowed {
		log.Warnf("chunk of %d records (tag %s) kept for retry: %v (%d more chunks kept for this cause in the last minute; failing since %v)", n, tag, err, held, h.clock.Now().Sub(h.since).Round(time.Second))
	}
}

func (h *health) recovered(log *Logger) {
	if !h.anyFailing.Load() {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.failing {
		log.Infof("delivering again after %d retried chunks over %v", h.retries, h.clock.Now().Sub(h.since).Round(time.Second))
		h.failing, h.retries, h.causes = false, 0, nil
		h.anyFailing.Store(false)
	}
}
