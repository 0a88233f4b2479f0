package core

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// health logs failures an operator can act on without one line per retried chunk: each
// cause once a minute with a count of the chunks it held back, and the recovery once the
// failures have stopped. A destination that refuses only part of the load (a quota, a
// throttling proxy) has successes between its failures: those neither end the outage in
// the log nor start a new one, so the lines stay one per cause a minute however many
// containers' chunks interleave.
type health struct {
	clock      Clock
	anyFailing atomic.Bool // failing, read without the lock on every successful flush

	mu       sync.Mutex // guards the rest
	failing  bool
	since    time.Time // of the first failure of the outage
	lastFail time.Time
	retries  int
	// Each cause's minute, kept across a recovery: a cause that returns within its
	// minute is counted, not logged again.
	causes   map[string]*Every
	recovery Every // the recovery line, once a minute at most
}

// recoveryQuiet is how long after its last failure an output is said to deliver again.
const recoveryQuiet = 10 * time.Second

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
	now := h.clock.Now()
	h.retries++
	h.lastFail = now
	if !h.failing {
		h.failing, h.since = true, now
		h.anyFailing.Store(true)
	}
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
	switch {
	case !allowed:
	case held == 0:
		log.Warnf("chunk of %d records (tag %s) kept for retry: %v (a cause is logged once a minute while it lasts, with the chunks it held back)", n, tag, err)
	default:
		log.Warnf("chunk of %d records (tag %s) kept for retry: %v (%d more chunks kept for this cause in the last minute; failing since %v)", n, tag, err, held, now.Sub(h.since).Round(time.Second))
	}
}

func (h *health) recovered(log *Logger) {
	if !h.anyFailing.Load() {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.clock.Now()
	if !h.failing || now.Sub(h.lastFail) < recoveryQuiet {
		return
	}
	h.recovery.Clock = h.clock
	h.recovery.Interval = time.Minute
	if ok, _ := h.recovery.Allow(); ok {
		log.Infof("delivering again after %d retried chunks over %v", h.retries, h.lastFail.Sub(h.since).Round(time.Second))
	}
	h.failing, h.retries = false, 0
	h.anyFailing.Store(false)
}
