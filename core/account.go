package core

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/trailstack/trailstack/metrics"
)

// The accountant finds the lines of container logs that the engine lost before they reached
// this output: evicted from the buffer by storage.total_limit_size, read while no chunk
// could be written (a full disk), left in a rotated file that tail let go, or too long for
// tail. It compares each log file, line by line, with the lines the destination confirmed
// (tail's offset_key on every record, record.OffsetKey) and with what Fluent Bit's buffer
// still holds, and counts what is in none of them. Nothing is counted while it may still
// arrive: a line below the last one confirmed from its file is a gap, and a gap is lost only
// once it outlived the grace and no stored chunk holds it.

// Causes of a lost line, the values of trailstack_records_lost_total's cause.
const (
	CauseBufferCap     = "buffer_cap"     // held in a stored chunk that left the buffer unsent here
	CauseNotBuffered   = "not_buffered"   // read by tail, never in a stored chunk
	CauseRotatedUnread = "rotated_unread" // past anything tail read of a rotated file it let go
	CauseTooLong       = "too_long"       // a line over tail's buffer_max_size, which it skips
)

var lossCauses = []string{CauseBufferCap, CauseNotBuffered, CauseRotatedUnread, CauseTooLong}

// AccountConfig is where the accountant looks.
type AccountConfig struct {
	Links      string        // the kubelet's links to container logs (tail's path)
	Storage    string        // Fluent Bit's storage.path
	TagPrefix  string        // what the tag has before the link's name
	MaxLine    int64         // tail's buffer_max_size
	RotateWait time.Duration // tail's rotate_wait
	Interval   time.Duration // between passes
	Grace      time.Duration // how long a gap may wait for its chunk before the buffer is read
}

// Accountant counts one output's lost lines. Flushes hand it what they confirmed
// (Confirmed); a pass every Interval does the rest on its own goroutine.
type Accountant struct {
	cfg     AccountConfig
	clock   Clock
	log     *Logger
	lost    func(cause string) inc
	started time.Time

	mu      sync.Mutex // guards arrived
	arrived map[string][]run

	// The pass's own, touched by one goroutine at a time (pass).
	buffer  bufferIndex
	bufErr  Every
	streams map[string]*logStream
	notes   map[string]*lossNote
	Lost    map[string]int64 // by cause, for tests

	stop chan struct{}
	done chan struct{}
}

type inc interface{ Add(float64) }

// run is records of one file that one flush confirmed, in the file's order: the time of
// the first (to find which file: a tag names a container, whose log the kubelet rotates)
// and the offsets of their last lines.
type run struct {
	first int64 // Unix nanoseconds
	offs  []int64
}

// stream is a container's log: its files and where the pass stands in each.
type logStream struct {
	name       string              // the link's name
	dir        string              // the kubelet's directory of the container's files
	base       string              // the current file's name in dir, e.g. 0.log
	files      map[uint64]*logFile // by inode: a rotation renames a file, it stays the same
	unresolved []run               // confirmed runs not found in any file yet
	gone       []*storedRun        // runs of chunks that left the buffer, while gaps may be theirs
	idle       int                 // passes with nothing to do
}

type logFile struct {
	name    string // in the stream's directory, as of the last pass
	started bool
	done    int64              // every record whose last line starts before done is accounted for
	maxSeen int64              // the last line tail is known to have read (confirmed or stored)
	offs    []int64            // confirmed since the last pass, at or past done
	gaps    map[int64]*lineGap // records below what was confirmed, not confirmed yet
	letGo   bool
}

type lineGap struct {
	end    int64 // where the record's last line ends
	since  time.Time
	stored bool // seen in a stored chunk
	long   bool
}

// NewAccountant starts the passes.
func NewAccountant(cfg AccountConfig, clock Clock, log *Logger, m *metrics.Instance) *Accountant {
	a := &Accountant{cfg: cfg, clock: clock, log: log, started: clock.Now(),
		buffer: bufferIndex{dir: cfg.Storage, chunks: map[string]*storedChunk{}}, bufErr: Every{Interval: time.Minute, Clock: clock},
		arrived: map[string][]run{}, streams: map[string]*logStream{}, notes: map[string]*lossNote{},
		Lost: map[string]int64{}, stop: make(chan struct{}), done: make(chan struct{})}
	a.lost = func(cause string) inc { return nopInc{} }
	if m != nil {
		a.lost = func(cause string) inc { return m.Lost(cause) }
		for _, c := range lossCauses {
			m.Lost(c) // at zero from the start, for the alert
		}
	}
	if cfg.Interval > 0 {
		go a.loop()
	} else {
		close(a.done)
	}
	return a
}

type nopInc struct{}

func (nopInc) Add(float64) {}

// Confirmed takes the offsets of records a flush delivered (or found delivered in the
// ledger), in the chunk's order, with the record times; a drop in offset starts another run
// (the next file, after a rotation).
func (a *Accountant) Confirmed(tag string, offs []int64, times []int64) {
	if len(offs) == 0 || !strings.HasPrefix(tag, a.cfg.TagPrefix) {
		return
	}
	var runs []run
	start := 0
	for i := 1; i <= len(offs); i++ {
		if i == len(offs) || offs[i] <= offs[i-1] {
			runs = append(runs, run{first: times[start], offs: slices.Clone(offs[start:i])})
			start = i
		}
	}
	a.mu.Lock()
	a.arrived[tag] = append(a.arrived[tag], runs...)
	a.mu.Unlock()
}

func (a *Accountant) loop() {
	defer close(a.done)
	t := time.NewTicker(a.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-a.stop:
			return
		case <-t.C:
			a.Pass()
		}
	}
}

// Close stops the passes.
func (a *Accountant) Close() {
	select {
	case <-a.stop:
	default:
		close(a.stop)
	}
	<-a.done
}

// Pass accounts for what arrived since the last one. Tests call it directly.
func (a *Accountant) Pass() {
	now := a.clock.Now()
	// The buffer first: a chunk confirmed and then removed has its confirmation in arrived.
	gone, err := a.buffer.update()
	bufferOK := err == nil
	if !bufferOK {
		if ok, _ := a.bufErr.Allow(); ok {
			a.log.Warnf("account_logs: cannot read the buffer %s, gaps wait: %v", a.cfg.Storage, err)
		}
	}
	a.mu.Lock()
	arrived := a.arrived
	a.arrived = map[string][]run{}
	a.mu.Unlock()
	for tag, runs := range arrived {
		s := a.stream(tag)
		s.unresolved = append(s.unresolved, runs...)
	}
	// What the buffer holds and what left it count before anything was confirmed: an
	// output whose destination is down from the start loses its oldest chunks to the cap.
	held := map[string][]*storedRun{}
	for _, c := range a.buffer.chunks {
		if strings.HasPrefix(c.tag, a.cfg.TagPrefix) {
			a.stream(c.tag)
			held[c.tag] = append(held[c.tag], c.runs...)
		}
	}
	for tag := range gone {
		if strings.HasPrefix(tag, a.cfg.TagPrefix) {
			a.stream(tag)
		}
	}
	for tag, s := range a.streams {
		a.locate(s)
		names := s.candidates()
		for ino, f := range s.files {
			if n, ok := names[ino]; ok {
				f.name = n
			} else {
				delete(s.files, ino) // deleted by the kubelet: nothing of it can be read or sent
			}
		}
		a.resolve(s, names)
		for _, r := range held[tag] {
			a.resolveStored(s, names, r)
		}
		for _, r := range gone[tag] {
			if a.resolveStored(s, names, r) {
				s.gone = append(s.gone, r)
			}
		}
		busy := len(arrived[tag]) > 0
		for _, f := range s.files {
			if a.walk(s, f, now) {
				busy = true
			}
		}
		a.classify(tag, s, now, bufferOK)
		if busy || a.open(s) {
			s.idle = 0
		} else if s.idle++; s.idle > 360 && s.dir != "" {
			if _, err := os.Stat(s.dir); err != nil {
				delete(a.streams, tag) // the pod is gone, and everything of it accounted
			}
		}
	}
	a.report(now)
}

func (a *Accountant) stream(tag string) *logStream {
	s := a.streams[tag]
	if s == nil {
		s = &logStream{name: strings.TrimPrefix(tag, a.cfg.TagPrefix), files: map[uint64]*logFile{}}
		a.streams[tag] = s
	}
	return s
}

// resolveStored finds the file of a stored run, once, and notes how far tail read it.
func (a *Accountant) resolveStored(s *logStream, names map[uint64]string, r *storedRun) bool {
	if !r.resolved {
		ino, ok := a.fileOf(s.dir, names, run{first: r.first, offs: []int64{r.lo}})
		if !ok {
			return false
		}
		r.ino, r.resolved = ino, true
	}
	f := s.files[r.ino]
	if f == nil {
		f = &logFile{name: names[r.ino], gaps: map[int64]*lineGap{}}
		s.files[r.ino] = f
	}
	f.maxSeen = max(f.maxSeen, r.hi+1)
	return true
}

// locate finds the container's directory through the kubelet's link.
func (a *Accountant) locate(s *logStream) {
	target, err := os.Readlink(filepath.Join(a.cfg.Links, s.name))
	if err != nil {
		return // the link is gone with the pod: the files known stay
	}
	if !filepath.IsAbs(target) {
		target = filepath.Join(a.cfg.Links, target)
	}
	s.dir, s.base = filepath.Dir(target), filepath.Base(target)
}

// candidates are the container's files tail reads, by inode: the current one and those
// rotated from it (compressed ones tail never reads).
func (s *logStream) candidates() map[uint64]string {
	names := map[uint64]string{}
	if s.dir == "" {
		return names
	}
	entries, _ := os.ReadDir(s.dir)
	for _, e := range entries {
		n := e.Name()
		if n != s.base && !(strings.HasPrefix(n, s.base+".") && !strings.HasSuffix(n, ".gz") && !strings.HasSuffix(n, ".tmp")) {
			continue
		}
		if fi, err := e.Info(); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				names[st.Ino] = n
			}
		}
	}
	return names
}

// resolve finds each confirmed run's file: the one whose line at the run's first offset
// carries the run's first time (a record joined from partial lines carries its first part's
// time and the offset of its last, written within a moment after).
func (a *Accountant) resolve(s *logStream, names map[uint64]string) {
	if len(s.unresolved) == 0 {
		return
	}
	var keep []run
	for _, r := range s.unresolved {
		ino, ok := a.fileOf(s.dir, names, r)
		if !ok {
			// Not in any file (yet): the link may lag a rotation; a file deleted since
			// holds nothing left to count.
			if r.first > a.clock.Now().Add(-10*a.cfg.Interval).UnixNano() {
				keep = append(keep, r)
			}
			continue
		}
		f := s.files[ino]
		if f == nil {
			f = &logFile{name: names[ino], gaps: map[int64]*lineGap{}}
			s.files[ino] = f
		}
		f.offs = append(f.offs, r.offs...)
	}
	s.unresolved = keep
}

const partialSpread = 2 * time.Second

func (a *Accountant) fileOf(dir string, names map[uint64]string, r run) (uint64, bool) {
	var best uint64
	bestDelta := int64(-1)
	for ino, n := range names {
		t, ok := lineTimeAt(filepath.Join(dir, n), r.offs[0])
		if !ok {
			continue
		}
		d := t - r.first
		if d < 0 || d > int64(partialSpread) {
			continue
		}
		if bestDelta < 0 || d < bestDelta {
			best, bestDelta = ino, d
		}
	}
	return best, bestDelta >= 0
}

// lineTimeAt reads the CRI time of the line that starts at off.
func lineTimeAt(path string, off int64) (int64, bool) {
	fh, err := os.Open(path)
	if err != nil {
		return 0, false
	}
	defer fh.Close()
	var buf [48]byte
	start := off
	if off > 0 {
		start = off - 1
	}
	n, _ := fh.ReadAt(buf[:], start)
	b := buf[:n]
	if off > 0 {
		if len(b) == 0 || b[0] != '\n' {
			return 0, false
		}
		b = b[1:]
	}
	sp := bytes.IndexByte(b, ' ')
	if sp < 0 {
		return 0, false
	}
	t, err := time.Parse(time.RFC3339Nano, string(b[:sp]))
	if err != nil {
		return 0, false
	}
	return t.UnixNano(), true
}

// walk reads a file from where the pass stands to the last line tail is known to have
// read, and notes each record not confirmed as a gap. It reports whether anything moved.
func (a *Accountant) walk(s *logStream, f *logFile, now time.Time) bool {
	path := filepath.Join(s.dir, f.name)
	slices.Sort(f.offs)
	f.offs = slices.Compact(f.offs)
	moved := len(f.offs) > 0
	for _, o := range f.offs {
		delete(f.gaps, o)
	}
	fi, err := os.Stat(path)
	if err != nil {
		f.offs = f.offs[:0]
		return moved
	}
	if !f.started {
		if len(f.offs) == 0 {
			return moved
		}
		f.started = true
		f.done = f.offs[0]
		// A file begun after this output started is accounted from its first line; an older
		// one from the first line this process saw confirmed (what came before was the
		// previous agent's to deliver).
		if t, ok := lineTimeAt(path, 0); ok && t >= a.started.UnixNano() {
			f.done = 0
		}
	}
	limit := f.done // records whose last line starts before limit were read by tail
	if n := len(f.offs); n > 0 && f.offs[n-1] >= limit {
		limit = f.offs[n-1] + 1
	}
	f.maxSeen = max(f.maxSeen, limit)
	rotated := f.name != s.base
	if rotated && !f.letGo && now.Sub(fi.ModTime()) > a.cfg.RotateWait+2*a.cfg.Interval {
		// Tail lets a rotated file go rotate_wait after it saw the rotation: what it did not
		// read by then it never will.
		f.letGo = true
	}
	if f.letGo {
		limit = fi.Size() + 1
	}
	if limit <= f.done {
		f.offs = f.offs[:0]
		return moved
	}
	fh, err := os.Open(path)
	if err != nil {
		f.offs = f.offs[:0]
		return moved
	}
	defer fh.Close()
	confirmed := f.offs
	end := f.done
	walkRecords(io.NewSectionReader(fh, f.done, fi.Size()-f.done), f.done, a.cfg.MaxLine, func(last, lineEnd int64, long bool) bool {
		if last >= limit {
			return false
		}
		i, found := slices.BinarySearch(confirmed, last)
		confirmed = confirmed[i:]
		if !found && f.gaps[last] == nil {
			f.gaps[last] = &lineGap{end: lineEnd, since: now, long: long}
		}
		end = lineEnd
		return true
	})
	if end > f.done {
		f.done = end
		moved = true
	}
	f.offs = f.offs[:0]
	return moved
}

// walkRecords calls fn with each whole record of a CRI log from r (which starts at base, at
// a line's start): the offset where its last line starts, where that line ends, and whether
// one of its lines is over maxLine. Partial lines (P) join the next full line (F) of the
// same stream, as the cri parser joins them. A line not yet ended is left for later.
func walkRecords(r io.Reader, base, maxLine int64, fn func(last, end int64, long bool) bool) {
	br := newLineReader(r)
	pos := base
	type partial struct{ long bool }
	open := map[string]*partial{}
	for {
		line, err := br.next()
		if err != nil {
			return
		}
		start := pos
		pos += int64(len(line))
		long := int64(len(line)) > maxLine
		// time stream flag message
		f := bytes.SplitN(line, []byte{' '}, 4)
		if len(f) < 3 {
			if !fn(start, pos, long) {
				return
			}
			continue
		}
		stream := string(f[1])
		if string(f[2]) == "P" {
			p := open[stream]
			if p == nil {
				p = &partial{}
				open[stream] = p
			}
			p.long = p.long || long
			continue
		}
		if p := open[stream]; p != nil {
			long = long || p.long
			delete(open, stream)
		}
		if !fn(start, pos, long) {
			return
		}
	}
}

// lineReader hands out whole lines, newline included, and stops at one not yet ended.
type lineReader struct {
	r   io.Reader
	buf []byte
	pos int
	eof bool
}

func newLineReader(r io.Reader) *lineReader { return &lineReader{r: r, buf: make([]byte, 0, 64<<10)} }

func (l *lineReader) next() ([]byte, error) {
	for {
		if i := bytes.IndexByte(l.buf[l.pos:], '\n'); i >= 0 {
			line := l.buf[l.pos : l.pos+i+1]
			l.pos += i + 1
			return line, nil
		}
		if l.eof {
			return nil, io.EOF
		}
		if l.pos > 0 {
			n := copy(l.buf, l.buf[l.pos:])
			l.buf, l.pos = l.buf[:n], 0
		}
		if len(l.buf) == cap(l.buf) {
			l.buf = slices.Grow(l.buf, cap(l.buf))
		}
		n, err := l.r.Read(l.buf[len(l.buf):cap(l.buf)])
		l.buf = l.buf[:len(l.buf)+n]
		if err != nil {
			l.eof = true
		}
	}
}

func (a *Accountant) open(s *logStream) bool {
	for _, f := range s.files {
		if len(f.gaps) > 0 {
			return true
		}
	}
	return len(s.unresolved) > 0
}

// classify decides each gap that outlived the grace: one a stored chunk holds is pending;
// one no chunk holds is lost, with its cause. Too-long lines are counted at once.
func (a *Accountant) classify(tag string, s *logStream, now time.Time, bufferOK bool) {
	for ino, f := range s.files {
		for off, g := range f.gaps {
			if g.long {
				a.count(s, f.name, CauseTooLong, off, g.end)
				delete(f.gaps, off)
				continue
			}
			if now.Sub(g.since) < a.cfg.Grace || !bufferOK {
				continue
			}
			if a.buffer.holds(tag, ino, off) {
				continue
			}
			cause := CauseNotBuffered
			if r := s.evicted(ino, f, off); r != nil {
				r.explained++
				cause = CauseBufferCap
			} else if f.letGo && off >= f.maxSeen {
				cause = CauseRotatedUnread
			}
			a.count(s, f.name, cause, off, g.end)
			delete(f.gaps, off)
		}
	}
	// A run that left the buffer explains gaps until its records are all accounted for.
	s.gone = slices.DeleteFunc(s.gone, func(r *storedRun) bool {
		f := s.files[r.ino]
		return f == nil || r.explained >= r.n || r.hi < f.done && !f.gapIn(r.lo, r.hi)
	})
}

// evicted is the run of a chunk that left the buffer without this output confirming it and
// that held the record at off: a chunk is confirmed whole or not at all, so its first record
// still being a gap says which.
func (s *logStream) evicted(ino uint64, f *logFile, off int64) *storedRun {
	for _, r := range s.gone {
		if r.ino == ino && r.lo <= off && off <= r.hi && r.explained < r.n && (r.explained > 0 || f.gaps[r.lo] != nil) {
			return r
		}
	}
	return nil
}

func (f *logFile) gapIn(lo, hi int64) bool {
	for off := range f.gaps {
		if lo <= off && off <= hi {
			return true
		}
	}
	return false
}

// lossNote gathers a container's losses of one cause between log lines.
type lossNote struct {
	pod, ns, container, file string
	count                    int64
	from, to                 int64
	every                    Every
}

func (a *Accountant) count(s *logStream, name, cause string, from, to int64) {
	a.lost(cause).Add(1)
	a.Lost[cause]++
	key := s.name + "\x00" + cause
	n := a.notes[key]
	if n == nil {
		pod, ns, container := podOfLink(s.name)
		n = &lossNote{pod: pod, ns: ns, container: container, every: Every{Interval: time.Minute, Clock: a.clock}}
		a.notes[key] = n
	}
	file := filepath.Join(s.dir, name)
	if n.count == 0 || n.file != file {
		n.file, n.from, n.to = file, from, to
	}
	n.from, n.to = min(n.from, from), max(n.to, to)
	n.count++
}

// report logs each container's losses, per cause, at most once a minute.
func (a *Accountant) report(now time.Time) {
	for key, n := range a.notes {
		if n.count == 0 {
			continue
		}
		if ok, _ := n.every.Allow(); !ok {
			continue
		}
		cause := key[strings.IndexByte(key, 0)+1:]
		a.log.Errorf("lost %d lines of pod %s/%s container %s (%s bytes %d-%d): %s", n.count, n.ns, n.pod, n.container, n.file, n.from, n.to, causeText(cause))
		n.count = 0
	}
}

func causeText(cause string) string {
	switch cause {
	case CauseBufferCap:
		return "the engine evicted their chunk from this output's buffer (storage.total_limit_size)"
	case CauseNotBuffered:
		return "tail read them while no chunk could be stored (a full disk?)"
	case CauseRotatedUnread:
		return "tail let the rotated file go before reading them (rotate_wait)"
	case CauseTooLong:
		return "longer than tail's buffer_max_size, which tail skips"
	}
	return cause
}

// podOfLink reads the kubelet's link name: <pod>_<namespace>_<container>-<id>.log.
func podOfLink(name string) (pod, ns, container string) {
	base := strings.TrimSuffix(name, ".log")
	parts := strings.SplitN(base, "_", 3)
	if len(parts) != 3 {
		return base, "", ""
	}
	container = parts[2]
	if i := strings.LastIndexByte(container, '-'); i > 0 {
		container = container[:i]
	}
	return parts[0], parts[1], container
}

// String is for logs and tests.
func (g *lineGap) String() string { return fmt.Sprintf("gap to %d since %v", g.end, g.since) }
