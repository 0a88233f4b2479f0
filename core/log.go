package core

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// Logger writes lines in Fluent Bit's own format, so that they interleave readably with the
// engine's: "[2026/11/26 12:00:00] [ info] [output:trailstack:trailstack.0] message".
// Fluent Bit does not pass an instance's alias to Go plugins, so the instance is named by
// plugin name and index, as the engine names instances that have no alias. Not log/slog:
// Fluent Bit's line is a bracketed prefix and free text, with no attributes for a handler to
// render, so a slog.Handler would be this same formatting in four methods.
type Logger struct {
	prefix string
	out    io.Writer
	clock  Clock
}

// writeMu serialises whole lines from concurrent workers and instances: one line is one
// Write, never interleaved with another's.
var writeMu sync.Mutex

// NewLogger logs for the instance named name to w: standard error, where Fluent Bit logs,
// in the plugin.
func NewLogger(name string, w io.Writer) *Logger {
	return &Logger{prefix: "] [output:trailstack:" + name + "] ", out: w}
}

func (l *Logger) logf(level, format string, args ...any) {
	// Milliseconds, as the engine's own lines have them.
	line := l.clock.Now().UTC().Format("[2006/01/02 15:04:05.000] [") + level + l.prefix + fmt.Sprintf(format, args...) + "\n"
	writeMu.Lock()
	defer writeMu.Unlock()
	_, _ = io.WriteString(l.out, line)
}

// Errorf logs a failure that loses or holds back data.
func (l *Logger) Errorf(format string, args ...any) { l.logf("error", format, args...) }

// Warnf logs something an operator should look at.
func (l *Logger) Warnf(format string, args ...any) { l.logf(" warn", format, args...) }

// Infof logs a normal event.
func (l *Logger) Infof(format string, args ...any) { l.logf(" info", format, args...) }

// Every lets one line per interval through and counts the rest, so that a cause that
// repeats on every chunk is logged once per interval with how often it recurred.
type Every struct {
	Interval time.Duration
	Clock    Clock

	mu         sync.Mutex // guards last and suppressed
	last       time.Time
	suppressed int
}

// Allow reports whether a line may be logged now and how many were held back since the last.
func (e *Every) Allow() (ok bool, suppressed int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.Clock.Now()
	if !e.last.IsZero() && now.Sub(e.last) < e.Interval {
		e.suppressed++
		return false, 0
	}
	e.last, suppressed, e.suppressed = now, e.suppressed, 0
	return true, suppressed
}
