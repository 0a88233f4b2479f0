package core

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/trailstack/trailstack/metrics"
	"github.com/trailstack/trailstack/record"
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
	RepairDir  string        // where lost lines are handed back to tail for this output; "" for none
	RepairRate int           // lines a second at most
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
	buffer    bufferIndex
	full      fullTimes
	repairs   repairFiles
	budget    int // lines this pass may still repair
	repairErr Every
	noOffset  Every       // a tail input without offset_key, said once an hour
	Repairing int64       // lines handed back to tail, for tests
	window    []byte      // a file's lines being placed, kept from one run to the next
	lines     *lineReader // the walk's, kept likewise
	bufErr    Every
	streams   map[string]*logStream
	notes     map[string]*lossNote
	Lost      map[string]int64 // by cause, for tests

	stop chan struct{}
	done chan struct{}
}

type inc interface{ Add(float64) }

// run is records that one flush confirmed (or one chunk holds), in the chunk's order with
// their offsets rising: the offsets of their last lines and their times (Unix nanoseconds),
// which tell which file each is in (a tag names a container, whose log the kubelet rotates,
// and tail may read the rotated file and the new one into one chunk).
type run struct {
	offs, times []int64
}

// stream is a container's log: its files and where the pass stands in each.
type logStream struct {
	name       string              // the link's name
	dir        string              // the kubelet's directory of the container's files
	base       string              // the current file's name in dir, e.g. 0.log
	files      map[uint64]*logFile // by inode: a rotation renames a file, it stays the same
	unresolved []run               // confirmed runs not found in any file yet
	drift      map[uint64]int64    // by file: how far tail's offsets fall short (see place)
	gone       []*storedRun        // runs of chunks that left the buffer, while gaps may be theirs
	idle       int                 // passes with nothing to do
}

type logFile struct {
	name        string // in the stream's directory, as of the last pass
	started     bool
	done        int64   // every record whose last line starts before done is accounted for
	maxSeen     int64   // the last line tail is known to have read (confirmed or stored)
	offs        []int64 // confirmed, at or past what the walk passed; sorted up to kept
	kept        int
	marks       []mark // how far it was confirmed at each pass within the grace
	confirmedTo int64
	gaps        map[int64]*lineGap // records below what was confirmed, not confirmed yet
	anchor      anchor             // a record placed in it, by which its .gz is known
	letGo       bool
	gone        bool      // compressed or deleted by the kubelet (see vanished)
	mtime       time.Time // its last write, as of the last walk
}

// anchor is a record's last line's offset in its file and the record's time.
type anchor struct{ off, t int64 }

type lineGap struct {
	end     int64 // where the record's last line ends
	since   time.Time
	written int64      // its last line's time
	parts   []lineSpan // its partial lines before the last
	long    bool
}

// NewAccountant starts the passes.
func NewAccountant(cfg AccountConfig, clock Clock, log *Logger, m *metrics.Instance) *Accountant {
	a := &Accountant{cfg: cfg, clock: clock, log: log, started: clock.Now(),
		buffer: bufferIndex{dir: cfg.Storage, chunks: map[string]*storedChunk{}}, bufErr: Every{Interval: time.Minute, Clock: clock}, repairErr: Every{Interval: time.Minute, Clock: clock}, noOffset: Every{Interval: time.Hour, Clock: clock},
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
func (a *Accountant) Confirmed(tag string, offs []int64, times []int64, records int) {
	if !strings.HasPrefix(tag, a.cfg.TagPrefix) {
		return
	}
	if len(offs) == 0 {
		if ok, _ := a.noOffset.Allow(); ok && records > 0 {
			a.log.Warnf("account_logs: records of %s carry no %s: nothing of them is accounted for (set the tail input's offset_key to it)", tag, record.OffsetKey)
		}
		return
	}
	var runs []run
	start := 0
	for i := 1; i <= len(offs); i++ {
		if i == len(offs) || offs[i] <= offs[i-1] {
			runs = append(runs, run{offs: slices.Clone(offs[start:i]), times: slices.Clone(times[start:i])})
			start = i
		}
	}
	a.mu.Lock()
	a.arrived[tag] = append(a.arrived[tag], runs...)
	a.mu.Unlock()
}

// repairTagPrefix starts the tag of a repair file's records: repair.<output>.<link name>
// (the repair tail input's tag), which only that output matches.
const repairTagPrefix = "repair."

// repairedTag tells a chunk of repaired lines by its tag, and gives the tag their container's
// lines have.
func (a *Accountant) repairedTag(tag string) (string, bool) {
	rest, ok := strings.CutPrefix(tag, repairTagPrefix)
	if !ok || a.cfg.RepairDir == "" {
		return tag, false
	}
	_, name, ok := strings.Cut(rest, ".")
	if !ok {
		return tag, false
	}
	return a.cfg.TagPrefix + name, true
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
	// Files the kubelet compressed or deleted since the last pass, before the buffer is
	// read: a chunk read now places its records in what is left of them.
	named := make(map[*logStream]map[uint64]string, len(a.streams))
	for _, s := range a.streams {
		a.locate(s)
		named[s] = s.candidates()
		a.vanished(s, named[s], now)
	}
	// The buffer first: a chunk confirmed and then removed has its confirmation in arrived.
	a.full.note(a.cfg.Storage, now)
	a.budget = int(float64(a.cfg.RepairRate) * max(a.cfg.Interval, time.Second).Seconds())
	defer a.repairs.flush(a.log, func(cause string, n int) {
		a.lost(cause).Add(float64(n))
		a.Lost[cause] += int64(n)
		a.Repairing -= int64(n)
	})
	gone, err := a.buffer.update(a.placeStored)
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
		names, ok := named[s]
		if !ok { // a stream the buffer's chunks named first
			a.locate(s)
			names = s.candidates()
		}
		a.resolve(s, names)
		for _, r := range held[tag] {
			a.noteStored(s, names, r)
		}
		for _, r := range gone[tag] {
			a.noteStored(s, names, r)
			s.gone = append(s.gone, r)
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
		} else if s.idle++; s.idle > int(time.Hour/max(a.cfg.Interval, time.Second)) && s.dir != "" {
			if _, err := os.Stat(s.dir); err != nil {
				delete(a.streams, tag) // the pod is gone, and everything of it accounted
				if a.cfg.RepairDir != "" {
					// Its repair file was read an hour ago at the latest.
					_ = os.Remove(filepath.Join(a.cfg.RepairDir, s.name))
				}
			}
		}
	}
	a.report(now)
}

// vanished names the files of s as they are now, and handles those that left its directory: the kubelet compressed a rotated
// one (N.log.<time>.gz, which tail never reads) or deleted it. What of a compressed file the
// walk had not reached yet is walked now through the .gz, to its end: tail can no longer
// find it, and reads on only what it holds open until rotate_wait. Its gaps are then found
// by their offsets and times (fileOf) and repaired from the .gz. A deleted file's gaps are
// counted lost as their grace ends, where no chunk holds them.
func (a *Accountant) vanished(s *logStream, names map[uint64]string, now time.Time) {
	for ino, f := range s.files {
		if n, ok := names[ino]; ok {
			f.name = n // renamed by a rotation
			continue
		}
		if !f.gone {
			f.gone = true
			if gz := s.compressed(f); gz != "" {
				f.name = gz
				a.walkCompressed(s, f, now)
			}
		}
		if len(f.gaps) == 0 {
			delete(s.files, ino) // nothing of it missing
		}
	}
}

// compressed finds the .gz the kubelet made of f: <its rotated name>.gz, or, where the pass
// never saw it under that name (renamed and compressed between two passes), the one whose
// line at f's anchor carries the anchor's time.
func (s *logStream) compressed(f *logFile) string {
	if _, err := os.Stat(filepath.Join(s.dir, f.name+".gz")); err == nil {
		return f.name + ".gz"
	}
	if f.anchor.t == 0 {
		return ""
	}
	entries, _ := os.ReadDir(s.dir)
	for _, e := range entries {
		n := e.Name()
		if !strings.HasPrefix(n, s.base+".") || !strings.HasSuffix(n, ".gz") {
			continue
		}
		fh, err := os.Open(filepath.Join(s.dir, n))
		if err != nil {
			continue
		}
		zr, err := gzip.NewReader(fh)
		if err == nil {
			var b [48]byte
			if _, err := io.CopyN(io.Discard, zr, max(f.anchor.off-1, 0)); err == nil {
				k, _ := io.ReadFull(zr, b[:])
				if lt, ok := lineTimeIn(b[:k], f.anchor.off); ok && timeClose(lt, f.anchor.t) {
					fh.Close()
					return n
				}
			}
		}
		fh.Close()
	}
	return ""
}

// walkCompressed walks a rotated file the kubelet compressed from where the walk stood to
// its end. A file nothing was confirmed from yet is walked whole if it began after this
// output started (an output whose destination was down since), or else left: what came
// before the first line confirmed was the previous agent's.
func (a *Accountant) walkCompressed(s *logStream, f *logFile, now time.Time) {
	path := filepath.Join(s.dir, f.name)
	fh, err := os.Open(path)
	if err != nil {
		return
	}
	defer fh.Close()
	zr, err := gzip.NewReader(fh)
	if err != nil {
		return
	}
	slices.Sort(f.offs)
	f.offs = slices.Compact(f.offs)
	if !f.started {
		head := bufio.NewReader(zr)
		line, _ := head.Peek(40)
		if t, ok := criTime(line); !ok || t < a.started.UnixNano() {
			return
		}
		f.started, f.done = true, 0
		a.gapsFrom(f, head, math.MaxInt64, a.letGoAt(f, now), now)
		return
	}
	if _, err := io.CopyN(io.Discard, zr, f.done); err != nil {
		return
	}
	a.gapsFrom(f, zr, math.MaxInt64, a.letGoAt(f, now), now)
}

// letGoAt is when tail surely let a rotated file go, and a gap of it can no longer be read
// into a chunk: its grace starts there (now, if that is later).
func (a *Accountant) letGoAt(f *logFile, now time.Time) time.Time {
	f.letGo = true
	return later(now, f.mtime.Add(a.cfg.RotateWait+2*a.cfg.Interval))
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// placeStored places the records of a chunk in their files as the index reads them, while
// the files are there to read.
func (a *Accountant) placeStored(tag string, r run) []placed {
	if !strings.HasPrefix(tag, a.cfg.TagPrefix) {
		return nil
	}
	s := a.stream(tag)
	a.locate(s)
	names := s.candidates()
	out, _ := a.place(s, names, r)
	for _, p := range out {
		s.file(p.ino, names).anchorAt(p)
	}
	return out
}

// anchorAt keeps the first record placed in f.
func (f *logFile) anchorAt(p placed) {
	if f.anchor.t == 0 {
		f.anchor = anchor{p.offs[0], p.times[0]}
	}
}

func (a *Accountant) stream(tag string) *logStream {
	s := a.streams[tag]
	if s == nil {
		s = &logStream{name: strings.TrimPrefix(tag, a.cfg.TagPrefix), files: map[uint64]*logFile{}}
		a.streams[tag] = s
	}
	return s
}

// noteStored notes how far tail read a file, from a run the buffer holds or held.
func (a *Accountant) noteStored(s *logStream, names map[uint64]string, r *storedRun) {
	f := s.file(r.ino, names)
	f.maxSeen = max(f.maxSeen, r.hi+1)
}

// locate finds the container's directory through the kubelet's link.
func (a *Accountant) locate(s *logStream) {
	path := filepath.Join(a.cfg.Links, s.name)
	target, err := os.Readlink(path)
	if err != nil {
		if _, statErr := os.Stat(path); statErr != nil {
			return // the link is gone with the pod: the files known stay
		}
		target = path // a log file itself, not the kubelet's link
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

// resolve places each confirmed run in its files.
func (a *Accountant) resolve(s *logStream, names map[uint64]string) {
	if len(s.unresolved) == 0 {
		return
	}
	var keep []run
	for _, r := range s.unresolved {
		placed, rest := a.place(s, names, r)
		for _, p := range placed {
			f := s.file(p.ino, names)
			f.anchorAt(p)
			f.offs = append(f.offs, p.offs...)
		}
		// Not in any file (yet): the link may lag a rotation; a file deleted since holds
		// nothing left to count.
		if len(rest.offs) > 0 && rest.times[0] > a.clock.Now().Add(-10*a.cfg.Interval).UnixNano() {
			keep = append(keep, rest)
		}
	}
	s.unresolved = keep
}

func (s *logStream) file(ino uint64, names map[uint64]string) *logFile {
	f := s.files[ino]
	if f == nil {
		f = &logFile{name: names[ino], gaps: map[int64]*lineGap{}}
		s.files[ino] = f
	}
	return f
}

// placed is records of a run found in one file.
type placed struct {
	ino   uint64
	offs  []int64
	times []int64
}

// partialSpread is how much later than a record's time its last line may be stamped: a
// record joined from partial lines carries its first part's time and its last part's offset.
const partialSpread = 2 * time.Second

// place finds each record of r in the container's files: the file whose line at the
// record's offset carries its time. A record is found by its first line's time within
// partialSpread; consecutive records are checked in one read of the file. What cannot be
// found is returned as rest.
//
// Fluent Bit 5.1.1's offset_key falls short after a line tail skipped as too long (by about
// the line's length less tail's buffer): where a record is not at its offset, its line is
// searched for by its time after it, and the difference applies to the records after it.
//
// A record found nowhere (what tail makes of the rest of a line it skipped carries no
// runtime time) is left in rest, and the records after it are placed; after a few in a row,
// the rest of the run waits for the next pass (a file not there yet).
func (a *Accountant) place(s *logStream, names map[uint64]string, r run) (out []placed, rest run) {
	misses := 0
	for i := 0; i < len(r.offs); {
		ino, delta, ok := a.fileOf(s, names, r.times[i], r.offs[i])
		if !ok {
			if misses++; misses >= 4 {
				rest.offs, rest.times = append(rest.offs, r.offs[i:]...), append(rest.times, r.times[i:]...)
				return out, rest
			}
			rest.offs, rest.times = append(rest.offs, r.offs[i]), append(rest.times, r.times[i])
			i++
			continue
		}
		misses = 0
		j := i + 1
		if f := s.files[ino]; f != nil && f.gone {
			// A file gone from the directory: the records that follow among its gaps.
			for j < len(r.offs) && f.gapAt(r.offs[j]+delta, r.times[j]) {
				j++
			}
		} else {
			// The records that follow in the same file, read in one window (bounded: a run
			// that long is checked in several).
			base := r.offs[i] + delta
			last := i
			for last+1 < len(r.offs) && r.offs[last+1]+delta-base < 8<<20 {
				last++
			}
			a.window = slices.Grow(a.window[:0], int(r.offs[last]+delta-base+64))[:r.offs[last]+delta-base+64]
			n, _ := readAt(filepath.Join(s.dir, names[ino]), a.window, base)
			window := a.window[:n]
			for j <= last && timeMatches(window, r.offs[j]+delta-base, r.times[j]) {
				j++
			}
		}
		p := placed{ino: ino, offs: r.offs[i:j], times: r.times[i:j]}
		if delta != 0 {
			p.offs = slices.Clone(p.offs)
			for k := range p.offs {
				p.offs[k] += delta
			}
		}
		out = append(out, p)
		i = j
	}
	return out, rest
}

// timeMatches reports whether a line starts at rel in window with a CRI time at most
// partialSpread after t.
func timeMatches(window []byte, rel, t int64) bool {
	if rel <= 0 || rel >= int64(len(window)) || window[rel-1] != '\n' {
		return false
	}
	b := window[rel:min(int64(len(window)), rel+40)]
	ts, ok := criTime(b)
	return ok && timeClose(ts, t)
}

// fileOf is the file whose line at off (or off plus the file's drift) carries the time t,
// the nearest after within partialSpread, and what to add to off; failing that, the file
// where the line of time t follows off.
func (a *Accountant) fileOf(s *logStream, names map[uint64]string, t, off int64) (ino uint64, delta int64, ok bool) {
	// A file gone from the directory is found by its gaps: where the walk saw the record.
	for i, f := range s.files {
		if !f.gone {
			continue
		}
		for _, d := range []int64{s.drift[i], 0} {
			if f.gapAt(off+d, t) {
				return i, d, true
			}
		}
	}
	bestDelta := int64(-1)
	for i, n := range names {
		for _, d := range []int64{s.drift[i], 0} {
			lt, ok := lineTimeAt(filepath.Join(s.dir, n), off+d)
			if dt := abs(lt - t); ok && timeClose(lt, t) && (bestDelta < 0 || dt < bestDelta) {
				ino, delta, bestDelta = i, d, dt
			}
			if d == 0 {
				break
			}
		}
	}
	if bestDelta >= 0 {
		return ino, delta, true
	}
	for i, n := range names {
		if at, found := findLine(filepath.Join(s.dir, n), t, off); found {
			if s.drift == nil {
				s.drift = map[uint64]int64{}
			}
			s.drift[i] = at - off
			return i, at - off, true
		}
	}
	return 0, 0, false
}

// findLine looks for the line stamped t after off: the first line of that second whose time
// is t's, within what the engine's reading of a time can round.
func findLine(path string, t, off int64) (int64, bool) {
	fh, err := os.Open(path)
	if err != nil {
		return 0, false
	}
	defer fh.Close()
	needle := []byte("\n" + time.Unix(0, t).UTC().Format("2006-01-02T15:04:05"))
	buf := make([]byte, 1<<20)
	for pos := max(off-1, 0); pos < off+64<<20; pos += int64(len(buf) - 64) {
		n, err := fh.ReadAt(buf, pos)
		for b, at := buf[:n], 0; ; {
			i := bytes.Index(b[at:], needle)
			if i < 0 {
				break
			}
			at += i + 1
			if lt, ok := criTime(b[at:min(len(b), at+40)]); ok && timeClose(lt, t) {
				return pos + int64(at), true
			}
		}
		if err != nil {
			return 0, false
		}
	}
	return 0, false
}

// timeClose reports whether a line stamped lt can be the last line of a record of time t:
// the same time, or a moment later for a record joined from parts (partialSpread), give or
// take a microsecond of the engine's rounding when it reads a time.
func timeClose(lt, t int64) bool {
	d := lt - t
	return d >= -int64(time.Microsecond) && d <= int64(partialSpread)
}

func abs(n int64) int64 {
	if n < 0 {
		return -n
	}
	return n
}

// criTime reads the time at the start of a CRI line: the runtime's RFC 3339 in UTC read
// directly (every record is placed by it), any other form through time.Parse.
func criTime(b []byte) (int64, bool) {
	sp := bytes.IndexByte(b, ' ')
	if sp < 0 {
		return 0, false
	}
	if t, ok := utcTime(b[:sp]); ok {
		return t, true
	}
	t, err := time.Parse(time.RFC3339Nano, string(b[:sp]))
	if err != nil {
		return 0, false
	}
	return t.UnixNano(), true
}

// utcTime reads YYYY-MM-DDTHH:MM:SS[.fraction]Z as Unix nanoseconds.
func utcTime(b []byte) (int64, bool) {
	if len(b) < 20 || b[len(b)-1] != 'Z' || b[4] != '-' || b[7] != '-' || b[10] != 'T' || b[13] != ':' || b[16] != ':' {
		return 0, false
	}
	num := func(p []byte) (int64, bool) {
		var n int64
		for _, c := range p {
			if c < '0' || c > '9' {
				return 0, false
			}
			n = n*10 + int64(c-'0')
		}
		return n, true
	}
	y, ok1 := num(b[0:4])
	mo, ok2 := num(b[5:7])
	d, ok3 := num(b[8:10])
	h, ok4 := num(b[11:13])
	mi, ok5 := num(b[14:16])
	sec, ok6 := num(b[17:19])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60 {
		return 0, false
	}
	var ns int64
	if frac := b[19 : len(b)-1]; len(frac) > 0 {
		if frac[0] != '.' || len(frac) < 2 || len(frac) > 10 {
			return 0, false
		}
		n, ok := num(frac[1:])
		if !ok {
			return 0, false
		}
		for i := len(frac) - 1; i < 9; i++ {
			n *= 10
		}
		ns = n
	}
	return time.Date(int(y), time.Month(mo), int(d), int(h), int(mi), int(sec), int(ns), time.UTC).UnixNano(), true
}

// lineTimeAt reads the CRI time of the line that starts at off.
func lineTimeAt(path string, off int64) (int64, bool) {
	fh, err := os.Open(path)
	if err != nil {
		return 0, false
	}
	defer fh.Close()
	var buf [48]byte
	n, _ := fh.ReadAt(buf[:], max(off-1, 0))
	return lineTimeIn(buf[:n], off)
}

// lineTimeIn reads the CRI time of the line that starts at off, from b read from the byte
// before it (from 0 for a line at 0).
func lineTimeIn(b []byte, off int64) (int64, bool) {
	if off > 0 {
		if len(b) == 0 || b[0] != '\n' {
			return 0, false
		}
		b = b[1:]
	}
	return criTime(b)
}

// walk reads a file from where the pass stands to the last line tail is known to have
// read, and notes each record not confirmed as a gap. It reports whether anything moved.
func (a *Accountant) walk(s *logStream, f *logFile, now time.Time) bool {
	slices.Sort(f.offs)
	f.offs = slices.Compact(f.offs)
	moved := len(f.offs) != f.kept
	for _, o := range f.offs[f.kept:] {
		delete(f.gaps, o)
	}
	if f.gone {
		f.offs, f.kept = f.offs[:0], 0
		return moved
	}
	path := filepath.Join(s.dir, f.name)
	fi, err := os.Stat(path)
	if err != nil {
		f.offs, f.kept = f.offs[:0], 0
		return moved
	}
	f.mtime = fi.ModTime()
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
	if n := len(f.offs); n > 0 && f.offs[n-1] >= f.confirmedTo {
		f.confirmedTo = f.offs[n-1] + 1
		f.maxSeen = max(f.maxSeen, f.confirmedTo) // from what was confirmed, never what the pass walked
	}
	// The walk goes as far as was confirmed two passes ago (or a grace, if shorter), not
	// now: flushes finish out of order, and a record below the last one confirmed has had
	// that long to be confirmed too before it is taken for a gap. The offsets past it wait
	// in memory meanwhile, 8 bytes a line.
	f.marks = append(f.marks, mark{at: now, to: f.confirmedTo})
	limit := f.done // records whose last line starts before limit were read by tail
	for len(f.marks) > 0 && now.Sub(f.marks[0].at) >= min(a.cfg.Grace, 2*a.cfg.Interval) {
		limit = max(limit, f.marks[0].to)
		f.marks = f.marks[1:]
	}
	rotated := f.name != s.base
	if rotated && !f.letGo && now.Sub(fi.ModTime()) > a.cfg.RotateWait+2*a.cfg.Interval {
		// Tail lets a rotated file go rotate_wait after it saw the rotation: what it did not
		// read by then it never will.
		f.letGo = true
	}
	if f.letGo {
		limit = fi.Size() + 1
	}
	defer func() {
		// What the walk passed is done with; the rest waits for the next.
		i, _ := slices.BinarySearch(f.offs, limit)
		f.offs = f.offs[:copy(f.offs, f.offs[i:])]
		f.kept = len(f.offs)
	}()
	if limit <= f.done {
		return moved
	}
	fh, err := os.Open(path)
	if err != nil {
		return moved
	}
	defer fh.Close()
	return a.gapsFrom(f, io.NewSectionReader(fh, f.done, fi.Size()-f.done), limit, now, now) || moved
}

// gapsFrom reads f's records from r (which starts at f.done) whose last lines start before
// limit, and notes each one not confirmed as a gap whose grace starts at since. It reports
// whether the walk moved.
func (a *Accountant) gapsFrom(f *logFile, r io.Reader, limit int64, since, now time.Time) bool {
	confirmed := f.offs
	end := f.done
	if a.lines == nil {
		a.lines = newLineReader()
	}
	walkRecords(a.lines, r, f.done, a.cfg.MaxLine, func(w walked) bool {
		if w.last >= limit {
			return false
		}
		i, found := slices.BinarySearch(confirmed, w.last)
		confirmed = confirmed[i:]
		if !found && f.gaps[w.last] == nil {
			t, _ := criTime(w.line[:min(len(w.line), 40)])
			f.gaps[w.last] = &lineGap{end: w.end, since: since, written: t, long: w.long, parts: slices.Clone(w.parts)}
		}
		end = w.end
		return true
	})
	if end > f.done {
		f.done = end
		return true
	}
	return false
}

// mark is how far a file was confirmed at a pass.
type mark struct {
	at time.Time
	to int64
}

// lineSpan is a line's bytes in its file.
type lineSpan struct{ from, to int64 }

// walked is one whole record of a CRI log: where its last line starts and ends, that line,
// its earlier partial lines (P), and whether one of its lines is over the limit.
type walked struct {
	last, end int64
	line      []byte
	parts     []lineSpan
	long      bool
}

// walkRecords calls fn with each whole record of a CRI log from r (which starts at base, at
// a line's start). Partial lines (P) join the next full line (F) of the same stream, as the
// cri parser joins them. A line not yet ended is left for later.
func walkRecords(br *lineReader, r io.Reader, base, maxLine int64, fn func(w walked) bool) {
	br.reset(r)
	pos := base
	type partial struct {
		long  bool
		parts []lineSpan
	}
	open := map[string]*partial{}
	for {
		line, err := br.next()
		if err != nil {
			return
		}
		w := walked{last: pos, end: pos + int64(len(line)), line: line, long: int64(len(line)) > maxLine}
		pos = w.end
		// time stream flag message
		stream, flag, ok := criFields(line)
		if !ok {
			if !fn(w) {
				return
			}
			continue
		}
		if flag == 'P' {
			p := open[string(stream)]
			if p == nil {
				p = &partial{}
				open[string(stream)] = p
			}
			p.long = p.long || w.long
			p.parts = append(p.parts, lineSpan{w.last, w.end})
			continue
		}
		if p := open[string(stream)]; p != nil {
			w.long = w.long || p.long
			w.parts = p.parts
			delete(open, string(stream))
		}
		if !fn(w) {
			return
		}
	}
}

// criFields reads a CRI line's stream and flag (P or F).
func criFields(line []byte) (stream []byte, flag byte, ok bool) {
	a := bytes.IndexByte(line, ' ')
	if a < 0 {
		return nil, 0, false
	}
	b := bytes.IndexByte(line[a+1:], ' ')
	if b < 0 || a+1+b+1 >= len(line) {
		return nil, 0, false
	}
	return line[a+1 : a+1+b], line[a+1+b+1], true
}

// lineReader hands out whole lines, newline included, and stops at one not yet ended.
type lineReader struct {
	r   io.Reader
	buf []byte
	pos int
	eof bool
}

func newLineReader() *lineReader { return &lineReader{buf: make([]byte, 0, 64<<10)} }

func (l *lineReader) reset(r io.Reader) {
	l.r, l.buf, l.pos, l.eof = r, l.buf[:0], 0, false
}

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
		// In the file's order: a repaired record goes back to tail in it.
		offs := slices.Sorted(maps.Keys(f.gaps))
		for _, off := range offs {
			g := f.gaps[off]
			if g.long {
				// Never repaired: tail would skip it again.
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
			r := s.evicted(ino, f, off)
			switch {
			case r != nil:
				cause = CauseBufferCap
			case f.letGo && off >= f.maxSeen:
				cause = CauseRotatedUnread
			case a.full.around(time.Unix(0, g.written), a.cfg.Interval, a.cfg.Grace):
			case s.evictedBefore(ino, f, off):
				// The rest of an evicted chunk, written after the buffer was last read.
				cause = CauseBufferCap
			}
			if a.cfg.RepairDir != "" && (!f.gone || strings.HasSuffix(f.name, ".gz")) {
				if a.budget <= 0 {
					continue // the next pass's share
				}
				if err := a.repairs.add(filepath.Join(a.cfg.RepairDir, s.name), filepath.Join(s.dir, f.name), cause, g.parts, lineSpan{off, g.end}); err == nil {
					a.budget--
					if r != nil {
						r.explained++
					}
					a.note(s, f.name, "repair "+cause, off, g.end)
					a.Repairing++
					delete(f.gaps, off)
					continue
				} else if ok, _ := a.repairErr.Allow(); ok {
					a.log.Warnf("account_logs: cannot repair lines of %s, counted lost: %v", f.name, err)
				}
			}
			if r != nil {
				r.explained++
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

// evictedBefore reports whether a chunk that left the buffer unconfirmed held records of the
// file before off.
func (s *logStream) evictedBefore(ino uint64, f *logFile, off int64) bool {
	for _, r := range s.gone {
		if r.ino == ino && r.lo < off && (r.explained > 0 || f.gaps[r.lo] != nil) {
			return true
		}
	}
	return false
}

// fullTimes is when the buffer's filesystem was seen full: a line read then had no chunk to
// go to (not_buffered), where otherwise a gap after an evicted chunk is that chunk's rest.
type fullTimes struct{ at []time.Time }

// fullBelow is the free space under which the engine cannot grow or create a chunk (it
// allocates in pages, a chunk's first at least 4 KiB; 1 MiB leaves room for the metadata).
const fullBelow = 1 << 20

func (ft *fullTimes) note(dir string, now time.Time) {
	var st syscall.Statfs_t
	if syscall.Statfs(dir, &st) != nil || int64(st.Bavail)*int64(st.Bsize) >= fullBelow {
		return
	}
	ft.at = append(ft.at, now)
	if len(ft.at) > 1000 {
		ft.at = ft.at[len(ft.at)-1000:]
	}
}

// around reports whether the filesystem was seen full from a pass before t to grace after.
func (ft *fullTimes) around(t time.Time, interval, grace time.Duration) bool {
	for _, at := range ft.at {
		if !at.Before(t.Add(-2*interval)) && !at.After(t.Add(grace)) {
			return true
		}
	}
	return false
}

// gapAt reports whether f has a gap for a record of time t whose last line starts at off.
func (f *logFile) gapAt(off, t int64) bool {
	g := f.gaps[off]
	return g != nil && timeClose(g.written, t)
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
	a.note(s, name, cause, from, to)
}

// note gathers a line for the container's next log line of that kind (a cause, or "repair "
// and a cause).
func (a *Accountant) note(s *logStream, name, kind string, from, to int64) {
	key := s.name + "\x00" + kind
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
		kind := key[strings.IndexByte(key, 0)+1:]
		if cause, ok := strings.CutPrefix(kind, "repair "); ok {
			a.log.Warnf("repairing %d lines of pod %s/%s container %s (%s bytes %d-%d), read back from the log for tail: %s", n.count, n.ns, n.pod, n.container, n.file, n.from, n.to, causeText(cause))
		} else {
			a.log.Errorf("lost %d lines of pod %s/%s container %s (%s bytes %d-%d): %s", n.count, n.ns, n.pod, n.container, n.file, n.from, n.to, causeText(kind))
		}
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
