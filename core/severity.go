package core

import (
	"bytes"
)

// Severity is a log line's severity on RFC 5424's scale, 0 (emergency) to 7 (debug). Cloud
// Logging's LogSeverity has the same eight levels in hundreds, counted the other way up
// (debug 100 ... emergency 800), and one more below them, DEFAULT (0): SeverityDefault here.
type Severity int

// SeverityDefault is the name "default": Cloud Logging's DEFAULT, which syslog has no level for.
const SeverityDefault Severity = 8

// severityNames is every name both destinations read, in lower case: RFC 5424's keywords
// and their usual spellings, the first letters that GKE's agent accepts, and Java's levels
// (java.util.logging's severe, config, fine...).
var severityNames = map[string]Severity{
	"emerg": 0, "emergency": 0, "panic": 0,
	"alert": 1, "a": 1,
	"crit": 2, "critical": 2, "fatal": 2, "c": 2, "f": 2,
	"err": 3, "error": 3, "eror": 3, "e": 3, "severe": 3,
	"warn": 4, "warning": 4, "w": 4,
	"notice": 5, "n": 5,
	"info": 6, "information": 6, "informational": 6, "i": 6,
	"debug": 7, "trace": 7, "dbug": 7, "d": 7, "config": 7, "fine": 7, "finer": 7, "finest": 7,
	"default": SeverityDefault,
}

// SeverityNamed reads a severity name in any case, spaces around it ignored. Numbers are
// each destination's own (syslog's 0-7, Cloud Logging's hundreds) and not read here.
func SeverityNamed(name []byte) (Severity, bool) {
	name = bytes.TrimSpace(name)
	var lower [len("informational")]byte
	if len(name) > len(lower) {
		return 0, false
	}
	for i, c := range name {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		lower[i] = c
	}
	sev, ok := severityNames[string(lower[:len(name)])] // no allocation: Go looks the bytes up
	return sev, ok
}
