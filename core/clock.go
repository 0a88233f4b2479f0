package core

import "time"

// Clock tells the time: nil is the system's. Whatever must follow a test's time (backoff,
// log rate limits, deadlines) reads one, so that a test sets its own instead of waiting.
type Clock func() time.Time

// Now is the clock's time.
func (c Clock) Now() time.Time {
	if c == nil {
		return time.Now()
	}
	return c()
}
