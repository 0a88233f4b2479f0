// Package sample is what the demo's stand-ins know of the sample container logs
// (testdata/containers): each line the applications wrote, read from the CRI files
// themselves, and a Tally that says whether what a destination received holds every one of
// them exactly once. A receiver matches a message to the line it starts with by the line's
// CRI time stamp (every line of the sample has its own, to the microsecond, which is what
// syslog carries); the lines a stack trace joined into that message are found in its text.
package sample

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// Line is one line as an application wrote it: the runtime's partial parts (CRI P) joined
// to their last (F).
type Line struct {
	File      string // the log file's name: <pod>_<namespace>_<container>-<id>.log
	Container string
	Stream    string // stdout or stderr
	Time      time.Time
	Text      string
	Parts     int // the physical lines it took in the file
	next      int // the file's next line of the same stream, -1 at the end
}

// Sample is the lines of every *.log file of a directory.
type Sample struct {
	Files    int
	Lines    []Line
	Physical int // lines in the files, split parts counted each
	byMicro  map[int64]int
}

// Load reads dir's *.log files (CRI: "<RFC 3339 time> <stream> <P|F> <text>"). Two lines with
// the same time stamp to the microsecond make it fail: a receiver could not tell them apart.
func Load(dir string) (*Sample, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.log"))
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("no *.log files in %s", dir)
	}
	sort.Strings(files)
	s := &Sample{Files: len(files), byMicro: map[int64]int{}}
	for _, f := range files {
		if err := s.readFile(f); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func (s *Sample) readFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	name := filepath.Base(path)
	container := containerOf(name)
	last := map[string]int{}   // stream -> index of its last line, to chain next
	open := map[string]*Line{} // stream -> a line still in parts
	r := bufio.NewReaderSize(f, 1<<20)
	for n := 1; ; n++ {
		raw, err := r.ReadString('\n')
		if raw == "" && err != nil {
			break
		}
		raw = strings.TrimSuffix(raw, "\n")
		s.Physical++
		ts, rest, ok1 := strings.Cut(raw, " ")
		stream, rest, ok2 := strings.Cut(rest, " ")
		flag, text, _ := strings.Cut(rest, " ")
		t, terr := time.Parse(time.RFC3339Nano, ts)
		if !ok1 || !ok2 || terr != nil || (flag != "P" && flag != "F") {
			return fmt.Errorf("%s:%d: not a CRI log line", name, n)
		}
		if l := open[stream]; l != nil {
			l.Text += text
			l.Parts++
		} else {
			open[stream] = &Line{File: name, Container: container, Stream: stream, Time: t, Text: text, Parts: 1, next: -1}
		}
		if flag == "P" {
			continue
		}
		l := open[stream]
		delete(open, stream)
		key := l.Time.UnixMicro()
		if i, dup := s.byMicro[key]; dup {
			return fmt.Errorf("%s:%d: the same time stamp as a line of %s", name, n, s.Lines[i].File)
		}
		s.byMicro[key] = len(s.Lines)
		if i, ok := last[stream]; ok {
			s.Lines[i].next = len(s.Lines)
		}
		last[stream] = len(s.Lines)
		s.Lines = append(s.Lines, *l)
	}
	if len(open) > 0 {
		return fmt.Errorf("%s: ends in a partial line", name)
	}
	return nil
}

// containerOf is the container's name in a kubelet log file's name.
func containerOf(file string) string {
	parts := strings.SplitN(strings.TrimSuffix(file, ".log"), "_", 3)
	c := parts[len(parts)-1]
	if i := strings.LastIndexByte(c, '-'); i > 0 {
		c = c[:i]
	}
	return c
}

// MultiPart is how many lines the runtime wrote in more than one part.
func (s *Sample) MultiPart() int {
	n := 0
	for _, l := range s.Lines {
		if l.Parts > 1 {
			n++
		}
	}
	return n
}

// Tally counts what one destination received against the sample. Safe for concurrent use.
type Tally struct {
	s *Sample

	mu       sync.Mutex // guards the fields below: each connection or request records from its own goroutine
	direct   [][]string // the texts of the messages that start with each line
	messages int
	unknown  int
}

// Open loads dir's sample (Load) and starts its count: a stand-in's -sample flag.
func Open(dir string) (*Tally, error) {
	s, err := Load(dir)
	if err != nil {
		return nil, err
	}
	return NewTally(s), nil
}

// NewTally starts an empty count of s.
func NewTally(s *Sample) *Tally { return &Tally{s: s, direct: make([][]string, len(s.Lines))} }

// Add records a message that arrived with the time stamp at and the text text. It reports
// whether the time stamp is one of the sample's.
func (t *Tally) Add(at time.Time, text string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.messages++
	i, ok := t.s.byMicro[at.UnixMicro()]
	if !ok {
		t.unknown++
		return false
	}
	t.direct[i] = append(t.direct[i], text)
	return true
}

// Count is a Tally's result.
type Count struct {
	Lines    int // in the sample
	Messages int // that arrived
	Received int // sample lines that arrived at least once
	Lost     int // sample lines that did not arrive
	Twice    int // copies beyond the first, over all lines
	Traces   int // messages that hold more than one line (a stack trace joined)
	Joined   int // lines that arrived inside another line's message
	Unknown  int // messages with a time stamp no sample line has
}

// Complete is true when every line arrived exactly once and nothing else did.
func (c Count) Complete() bool { return c.Lost == 0 && c.Twice == 0 && c.Unknown == 0 }

func (c Count) String() string {
	return fmt.Sprintf("%d messages hold %d of the sample's %d lines (%d stack traces joined from %d lines), %d lost, %d twice, %d not in the sample",
		c.Messages, c.Received, c.Lines, c.Traces, c.Traces+c.Joined, c.Lost, c.Twice, c.Unknown)
}

// Count works out which lines arrived: a line arrived in each message that starts with it,
// and in each message of the lines before it on its stream whose text holds it and every
// line between (a stack trace's later lines).
func (t *Tally) Count() Count {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := make([]int, len(t.s.Lines))
	c := Count{Lines: len(t.s.Lines), Messages: t.messages, Unknown: t.unknown}
	for i, texts := range t.direct {
		n[i] += len(texts)
		for _, text := range texts {
			joined := 0
			for j := t.s.Lines[i].next; j >= 0; j = t.s.Lines[j].next {
				if l := t.s.Lines[j].Text; strings.TrimSpace(l) == "" || !strings.Contains(text, l) {
					break
				}
				n[j]++
				joined++
			}
			if joined > 0 {
				c.Traces++
				c.Joined += joined
			}
		}
	}
	for _, k := range n {
		switch {
		case k == 0:
			c.Lost++
		default:
			c.Received++
			c.Twice += k - 1
		}
	}
	return c
}
