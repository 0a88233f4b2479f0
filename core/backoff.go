package core

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

// Backoff is a sink's memory of failed attempts at its destination: after a failure, the
// flushes that follow answer RETRY at once until the wait is over, instead of each trying
// (and, for a destination that hangs, each holding a worker for a whole timeout: at shutdown
// Fluent Bit runs every queued flush before it exits).
type Backoff struct {
	Clock Clock

	mu       sync.Mutex // guards failures, retryAt and lastErr
	failures int        // failed attempts in a row
	retryAt  time.Time
	lastErr  error
}

// Retry policy: after n failed attempts in a row, wait RefusedWait(n) when the destination
// refused (it answers fast, so trying soon costs little), HungWait(n) when it timed out.
const (
	refusedMin = 500 * time.Millisecond
	waitMax    = 30 * time.Second
	hungMin    = 5 * time.Second
)

// RefusedWait doubles from half a second to 30 s.
func RefusedWait(failures int) time.Duration {
	if failures <= 0 {
		return 0
	}
	d := refusedMin
	for i := 1; i < failures && d < waitMax; i++ {
		d *= 2
	}
	return min(d, waitMax)
}

// HungWait is RefusedWait but at least 5 s, spread by up to a fifth either way so that a
// DaemonSet's nodes do not come back in step. r is a random number in [0, 1).
func HungWait(failures int, r float64) time.Duration {
	d := max(RefusedWait(failures), hungMin)
	return d + time.Duration((r-0.5)*0.4*float64(d))
}

func (b *Backoff) now() time.Time { return b.Clock.Now() }

// Check answers an error while an attempt must not start yet.
func (b *Backoff) Check(dest string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if wait := b.retryAt.Sub(b.now()); wait > 0 {
		return fmt.Errorf("not trying %s again for %v after %d failed attempts; last: %w", dest, wait.Round(time.Millisecond), b.failures, b.lastErr)
	}
	return nil
}

// Failed counts a failed attempt and sets when the next may start.
func (b *Backoff) Failed(err error, hung bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failures++
	b.lastErr = err
	wait := RefusedWait(b.failures)
	if hung {
		wait = HungWait(b.failures, rand.Float64())
	}
	b.retryAt = b.now().Add(wait)
}

// Succeeded forgets the failures.
func (b *Backoff) Succeeded() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failures, b.retryAt, b.lastErr = 0, time.Time{}, nil
}
