// Package exceptions finds the stack traces among a container's log lines, so that a trace
// goes to its destination as one entry, as GKE's fluentd agent (detect_exceptions) sent it:
// Java (and other JVM languages), Python, Go, Ruby, JavaScript, PHP, C# and Dart, each trace
// from its first line through its last frame, at most MaxLines lines and MaxBytes bytes.
//
// It reads lines one stream at a time and decides nothing about a line it has not seen: a
// caller hands it the lines it has (one chunk's), and a trace those lines cut short is
// found as the part they hold.
package exceptions

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
)

// Language is a set of languages whose traces are joined.
type Language uint16

const (
	Java Language = 1 << iota
	Python
	Go
	Ruby
	JavaScript
	PHP
	CSharp
	Dart

	All = Java | Python | Go | Ruby | JavaScript | PHP | CSharp | Dart
)

var languageNames = []struct {
	name string
	lang Language
}{{"java", Java}, {"python", Python}, {"go", Go}, {"ruby", Ruby}, {"js", JavaScript}, {"php", PHP}, {"csharp", CSharp}, {"dart", Dart}}

// ParseLanguages reads "all", "none", or a comma-separated list of java, python, go, ruby,
// js, php, csharp and dart.
func ParseLanguages(s string) (Language, error) {
	switch strings.TrimSpace(strings.ToLower(s)) {
	case "all":
		return All, nil
	case "none", "off":
		return 0, nil
	}
	var set Language
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(strings.ToLower(f))
		found := false
		for _, l := range languageNames {
			if l.name == f {
				set, found = set|l.lang, true
			}
		}
		if !found {
			return 0, fmt.Errorf("unknown language %q: want all, none, or a list of java, python, go, ruby, js, php, csharp, dart", f)
		}
	}
	return set, nil
}

// Detector finds traces of its languages.
type Detector struct {
	Languages          Language
	MaxLines, MaxBytes int // a trace's limits; 0: none
}

// Trace is lines [Start, End) of a stream, End-Start >= 2.
type Trace struct{ Start, End int }

// state is where a trace is: which lines may follow.
type state int

const (
	none      state = iota
	atStart         // an exception line of the JVM, JavaScript, C# or Dart kind: frames must follow
	atFrames        // in its "at ..." (or Dart "#n ...") frames
	pyStart         // Traceback (most recent call last):
	pyFrame         // after a File "..." line: its code may follow
	pyEnd           // the exception's own line: a chained trace may follow
	pyChain         // "During handling of ...": a Traceback follows
	goStart         // panic: / fatal error:
	goFunc          // after a goroutine header or a file line: a function (or created by)
	goFile          // after a function: its file and line
	rbFrames        // a Ruby error line, then "from ..." lines
	phpFrames       // a PHP error, then its stack trace
	dartStart       // "Unhandled exception:": its message follows, then frames
)

// Traces appends the traces among lines (one stream's, in order) to out. A nil line is not
// a log line (a record without one) and ends any trace.
func (d *Detector) Traces(lines [][]byte, out []Trace) []Trace {
	st, start, size := none, 0, 0
	blanks := 0 // blank lines after the last line that belonged: theirs only if more follows
	end := func(i int) {
		if i-blanks-start >= 2 {
			out = append(out, Trace{start, i - blanks})
		}
		st, blanks = none, 0
	}
	for i, line := range lines {
		if st != none {
			n := i - start + 1
			if line != nil && d.within(n, size+len(line)) {
				if len(bytes.TrimSpace(line)) == 0 && blankMayFollow(st) {
					blanks++
					size += len(line) + 1
					continue
				}
				if next, ok := d.continues(st, line); ok {
					st, blanks = next, 0
					size += len(line) + 1
					continue
				}
			}
			end(i)
		}
		if line == nil || !(i+1 < len(lines) && mayFollowStart(lines[i+1]) || bytes.HasPrefix(line, dartHeader)) {
			continue // a trace has two lines or more, and its second is one of these
		}
		if s, ok := d.starts(line); ok {
			st, start, size, blanks = s, i, len(line), 0
		}
	}
	if st != none {
		end(len(lines))
	}
	return out
}

// mayFollowStart tells whether line may be a trace's second: blank (Go), indented (frames
// of most languages, Python's File lines, Ruby's from lines), "#" (PHP, Dart), "[signal"
// (Go), "Stack trace:" or "PHP Stack trace:" (PHP), or a Dart exception's message. Nearly
// every ordinary line fails this test, at the cost of one byte's look, before the start
// patterns are tried.
func mayFollowStart(line []byte) bool {
	if line == nil {
		return false
	}
	if len(line) == 0 {
		return true
	}
	switch line[0] {
	case ' ', '\t', '\r', '#', '[', 'S', 'P':
		return true
	}
	return false
}

func (d *Detector) within(lines, bytes int) bool {
	return (d.MaxLines <= 0 || lines <= d.MaxLines) && (d.MaxBytes <= 0 || bytes <= d.MaxBytes)
}

func blankMayFollow(st state) bool {
	return st == pyEnd || st == pyChain || st == goStart || st == goFunc || st == goFile
}

// Quick rejection of the lines no trace starts with, before any pattern: every start line
// holds one of these.
var startWords = [][]byte{[]byte("Error"), []byte("Exception"), []byte("Throwable"), []byte("Traceback"),
	[]byte("panic: "), []byte("fatal error: "), []byte(":in `"), []byte("Unhandled exception")}

var (
	// An exception line, anywhere in the line: "java.lang.IllegalStateException: bad",
	// "Exception in thread "main" ...", "TypeError: x is not a function", "... ERROR
	// c.e.App: RuntimeException: failed".
	exceptionLine = regexp.MustCompile(`(?:Exception|Error|Throwable)(?::|$)`)
	rubyStart     = regexp.MustCompile(`:\d+:in [` + "`" + `'].*['"]: .*\(\w+(?:::\w+)*\)$`)
	phpStart      = regexp.MustCompile(`^(?:PHP )?(?:Fatal error|Parse error|Uncaught \w+): `)
)

// starts tells whether line may begin a trace of the detector's languages.
func (d *Detector) starts(line []byte) (state, bool) {
	hit := false
	for _, w := range startWords {
		if bytes.Contains(line, w) {
			hit = true
			break
		}
	}
	if !hit {
		return none, false
	}
	switch {
	case d.Languages&Python != 0 && bytes.Equal(bytes.TrimRight(line, " \r"), []byte("Traceback (most recent call last):")):
		return pyStart, true
	case d.Languages&Go != 0 && (bytes.HasPrefix(line, []byte("panic: ")) || bytes.HasPrefix(line, []byte("fatal error: "))):
		return goStart, true
	case d.Languages&Ruby != 0 && rubyStart.Match(line):
		return rbFrames, true
	case d.Languages&PHP != 0 && phpStart.Match(line):
		return phpFrames, true
	case d.Languages&Dart != 0 && bytes.Equal(bytes.TrimRight(line, " \r"), dartHeader):
		return dartStart, true
	case d.Languages&(Java|JavaScript|CSharp|Dart) != 0 && exceptionLine.Match(line):
		return atStart, true
	}
	return none, false
}

// continues tells whether line belongs to a trace in state st, and the state after it.
func (d *Detector) continues(st state, line []byte) (state, bool) {
	trimmed := bytes.TrimLeft(line, " \t")
	indented := len(trimmed) < len(line)
	switch st {
	case atStart, atFrames:
		switch {
		case indented && bytes.HasPrefix(trimmed, []byte("at ")): // Java, JavaScript, C#
			return atFrames, true
		case st == atFrames && (bytes.HasPrefix(trimmed, []byte("Caused by: ")) || bytes.HasPrefix(trimmed, []byte("Suppressed: "))):
			return atStart, true
		case st == atFrames && indented && bytes.HasPrefix(trimmed, []byte("... ")): // "... 12 more"
			return atFrames, true
		case d.Languages&CSharp != 0 && (bytes.HasPrefix(trimmed, []byte("--- End of ")) || bytes.HasPrefix(trimmed, []byte("---> "))):
			return atFrames, true
		case d.Languages&Dart != 0 && dartFrame(trimmed):
			return atFrames, true
		}
	case dartStart:
		return atStart, len(trimmed) > 0
	case pyStart, pyFrame:
		switch {
		case indented && bytes.HasPrefix(trimmed, []byte(`File "`)):
			return pyFrame, true
		case indented: // a frame's code, its ^^^^ markers, "[Previous line repeated ...]"
			return pyStart, true
		case !indented && len(trimmed) > 0: // the exception itself ends the trace
			return pyEnd, true
		}
	case pyEnd:
		switch {
		case bytes.HasPrefix(line, []byte("During handling of the above exception")) || bytes.HasPrefix(line, []byte("The above exception was the direct cause")):
			return pyChain, true
		}
	case pyChain:
		if bytes.Equal(bytes.TrimRight(line, " \r"), []byte("Traceback (most recent call last):")) {
			return pyStart, true
		}
	case goStart, goFunc, goFile:
		switch {
		case bytes.HasPrefix(line, []byte("goroutine ")) && bytes.HasSuffix(bytes.TrimRight(line, " \r"), []byte("]:")):
			return goFunc, true
		case st == goStart && (bytes.HasPrefix(line, []byte("[signal ")) || indented): // [signal ...], a re-panic
			return goStart, true
		case st == goFunc && !indented && (bytes.HasSuffix(bytes.TrimRight(line, " \r"), []byte(")")) || bytes.HasPrefix(line, []byte("created by "))):
			return goFile, true
		case st == goFile && line[0] == '\t':
			return goFunc, true
		}
	case rbFrames:
		if indented && bytes.HasPrefix(trimmed, []byte("from ")) {
			return rbFrames, true
		}
	case phpFrames:
		switch {
		case bytes.HasPrefix(line, []byte("Stack trace:")) || bytes.HasPrefix(line, []byte("PHP Stack trace:")),
			bytes.HasPrefix(line, []byte("#")), indented && bytes.HasPrefix(trimmed, []byte("thrown in ")),
			bytes.HasPrefix(line, []byte("PHP ")) && len(trimmed) > 4 && trimmed[4] >= '0' && trimmed[4] <= '9':
			return phpFrames, true
		}
	}
	return none, false
}

// dartHeader is the line a Dart trace starts with; its exception's message follows.
var dartHeader = []byte("Unhandled exception:")

// dartFrame is "#0      main (file:///app/bin/main.dart:5:3)".
func dartFrame(b []byte) bool {
	if len(b) < 3 || b[0] != '#' || b[1] < '0' || b[1] > '9' {
		return false
	}
	return bytes.HasSuffix(bytes.TrimRight(b, " \r"), []byte(")"))
}
