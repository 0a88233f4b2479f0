package core

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

// Pacer keeps an output to its destination's pace once the destination pushes back
// (Cloud Logging's RESOURCE_EXHAUSTED: a quota spent): one backoff for the whole output,
// however many flushes are queued. After a pushback no attempt starts until the wait is
// over, and then only so many at once: one at first, half as many after each pushback, half
// as many again more after each round of successes, until there are enough that the output
// is no longer paced. A flush waits meanwhile instead of answering RETRY, which Fluent Bit
// would log and reschedule chunk by chunk.
type Pacer struct {
	Clock Clock
	// After is the timer of the waits: nil is time.After. Tests set their own.
	After func(time.Duration) <-chan time.Time

	mu        sync.Mutex // guards the rest
	limit     int        // attempts at once while paced; 0: not paced
	inflight  int        // attempts started by Wait and not yet ended by Pushed or Done
	successes int        // attempts that went through since the limit last changed
	pushes    int        // pushbacks with no success in between, for the wait's length
	until     time.Time  // no attempt starts before
	lastErr   error
	changed   chan struct{} // closed whenever a waiting flush may go
}

// unpaced is the number of attempts at once past which an output is no longer paced: more
// than an output's workers.
const unpaced = 64

// PushedWait is the wait after n pushbacks in a row: RefusedWait's, at least the wait the
// destination asked for, and spread by up to a fifth either way so that a DaemonSet's nodes
// do not return in step. r is a random number in [0, 1).
func PushedWait(n int, asked time.Duration, r float64) time.Duration {
	d := max(RefusedWait(n), asked)
	return d + time.Duration((r-0.5)*0.4*float64(d))
}

func (p *Pacer) after(d time.Duration) <-chan time.Time {
	if p.After != nil {
		return p.After(d)
	}
	return time.After(d)
}

// Wait returns once an attempt may start, or ctx's error (with the destination's last
// answer) if its deadline comes first. Every nil return is followed by one Pushed or Done.
func (p *Pacer) Wait(ctx context.Context) error {
	for {
		p.mu.Lock()
		wait := p.until.Sub(p.Clock.Now())
		if p.limit == 0 || wait <= 0 && p.inflight < p.limit {
			p.inflight++
			p.mu.Unlock()
			return nil
		}
		if p.changed == nil {
			p.changed = make(chan struct{})
		}
		changed, last := p.changed, p.lastErr
		p.mu.Unlock()
		var timer <-chan time.Time
		if wait > 0 {
			timer = p.after(wait)
		}
		select {
		case <-timer:
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("waited for the destination's pushback to pass: %w; last: %w", ctx.Err(), last)
		}
	}
}

// Pushed ends an attempt the destination pushed back; asked is the wait it named (0 if none).
func (p *Pacer) Pushed(err error, asked time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.inflight--
	p.lastErr = err
	now := p.Clock.Now()
	if p.limit > 0 && now.Before(p.until) {
		return // started before the wait began: the wait stands
	}
	p.pushes++
	p.limit = max(1, p.limit/2)
	p.successes = 0
	p.until = now.Add(PushedWait(p.pushes, asked, rand.Float64()))
	p.signal()
}

// Done ends an attempt that was not pushed back (delivered, or failed otherwise).
func (p *Pacer) Done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.inflight--
	if p.limit == 0 {
		return
	}
	p.pushes = 0
	if p.successes++; p.successes >= p.limit {
		p.limit += max(1, p.limit/2)
		p.successes = 0
		if p.limit >= unpaced {
			p.limit, p.lastErr = 0, nil
		}
	}
	p.signal()
}

func (p *Pacer) signal() {
	if p.changed != nil {
		close(p.changed)
		p.changed = nil
	}
}
