package stackdriver

import (
	"strconv"
	"time"
	"unsafe"

	"cloud.google.com/go/logging/apiv2/loggingpb"
	"google.golang.org/genproto/googleapis/api/monitoredres"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/trailstack/trailstack/accessor"
	"github.com/trailstack/trailstack/core"
	"github.com/trailstack/trailstack/record"
)

// scratch is one flush's reusable state. A chunk holds the records of one container file,
// so consecutive records share their resource, log name and pod labels: those are built once
// and shared between entries (read-only; an entry that needs more labels copies them).
type scratch struct {
	vals []record.Value
	memo accessor.Memo // the last record's kubernetes map, nearly always the next one's
	// The memo's word for vals' kubernetes values, and the pod they were last found to be,
	// under that word and tag (lastPod.gen: 0 for none).
	stamp   accessor.Stamp
	lastPod struct {
		stamp accessor.Stamp
		tag   string
		gen   int
	}
	// The last entry's log name and the values it was rendered from, which point into the
	// chunk (cleared with it; the chunk's tag is the same for all): most entries of a chunk
	// share one stream.
	lastLog struct {
		name string         // "": none
		vals []record.Value // at the template's slots
	}
	buf []byte
	tag accessor.TagIdentity // the container the chunk's tag names

	// insertIds are <chunk>-<index>: chunk is a hash of the tag and of every record's time
	// and body, the same on every retry of the chunk (Fluent Bit hands the same bytes), and
	// different for any other chunk unless all its records are byte for byte the same.
	chunk []byte // 16 hex digits
	// A record stamped outside what the service stores (more than a day ahead, or older
	// than the log bucket keeps) takes the time of the last record before it that is not
	// (or, at the head of the chunk, of the first one after it): the same on every retry,
	// so the retry is a copy that Cloud Logging drops.
	anchor, firstSane time.Time
	oldest, newest    time.Time // what the service stores, for this flush

	conv    converter // the flush's budget of protobuf values
	textual int       // JSON payloads sent as text: too large, or over the budget

	// What consecutive entries share, built once and then looked up: a chunk's records
	// usually all share one resource, one set of pod labels and a log name per stream, but
	// may alternate between a few (several containers under one tag, stdout and stderr).
	// Entries that share all three go into one request, which carries them once.
	resources []cachedResource
	pods      []cachedPod
	logNames  []cachedLogName
	pod       *cachedPod // the last entry's pod labels, nil when it has none
	labelsGen int        // numbers cachedPods, to tell their label sets apart

	pending []pendingRequest // the flush's requests being filled, one per requestKey

	raw []byte // the chunk's encoded JSON payloads, which its entries point into

	// Slabs: a chunk's entries are allocated a thousand at a time and reused by the next
	// flush on this scratch; the requests that held them are sent before Deliver returns.
	entries [][]loggingpb.LogEntry
	stamps  [][]timestamppb.Timestamp
	texts   [][]loggingpb.LogEntry_TextPayload
	nEntry  int
	nText   int
	ids     []byte
}

const slab = 1024

func (s *scratch) newEntry() (*loggingpb.LogEntry, *timestamppb.Timestamp) {
	i, j := s.nEntry/slab, s.nEntry%slab
	if i == len(s.entries) {
		s.entries = append(s.entries, make([]loggingpb.LogEntry, slab))
		s.stamps = append(s.stamps, make([]timestamppb.Timestamp, slab))
	}
	s.nEntry++
	e, t := &s.entries[i][j], &s.stamps[i][j]
	e.Reset()
	t.Reset()
	return e, t
}

func (s *scratch) newText(text string) *loggingpb.LogEntry_TextPayload {
	i, j := s.nText/slab, s.nText%slab
	if i == len(s.texts) {
		s.texts = append(s.texts, make([]loggingpb.LogEntry_TextPayload, slab))
	}
	s.nText++
	p := &s.texts[i][j]
	p.TextPayload = text
	return p
}

func (m *mapper) newScratch() *scratch {
	return &scratch{vals: make([]record.Value, m.ex.Slots()), chunk: make([]byte, 16)}
}

// reset forgets the chunk: its values point into memory that is about to be reused.
func (s *scratch) reset() {
	s.anchor, s.firstSane = time.Time{}, time.Time{}
	s.conv, s.textual = converter{}, 0
	clear(s.vals)
	// The requests that held this chunk's entries are sent: their slabs are free again,
	// once nothing in them points into the chunk any more.
	for i := 0; i < s.nText; i++ {
		s.texts[i/slab][i%slab].TextPayload = ""
	}
	for i := 0; i < s.nEntry; i++ {
		s.entries[i/slab][i%slab].Reset()
	}
	s.nEntry, s.nText, s.ids = 0, 0, nil
	// The cached pods hold values in the chunk; resources and log names are copies, but a
	// chunk seldom has the last one's.
	clear(s.pods)
	s.resources, s.pods, s.logNames, s.pod = s.resources[:0], s.pods[:0], s.logNames[:0], nil
	s.lastPod.gen = 0
	s.lastLog.name = ""
	clear(s.lastLog.vals)
	clear(s.pending)
	s.pending = s.pending[:0]
	s.raw = s.raw[:0]
}

// maxCached bounds each cache: past it, the oldest entry makes room. A chunk with more
// distinct resources than that still maps right, only with more requests.
const maxCached = 8

type cachedResource struct {
	ns, pod, cont, node string
	container           bool
	res                 *monitoredres.MonitoredResource
}

type cachedPod struct {
	labelsRaw, ownersRaw record.Value // the pod's labels and ownerReferences in the chunk
	node                 string
	labels               map[string]string
	gen                  int
}

type cachedLogName struct{ id, name string }

// remember adds v to a cache, replacing the oldest entry once it holds maxCached.
func remember[T any](c []T, v T) ([]T, *T) {
	if len(c) < maxCached {
		c = append(c, v)
		return c, &c[len(c)-1]
	}
	copy(c, c[1:])
	c[len(c)-1] = v
	return c, &c[len(c)-1]
}

// keeps tells whether the service stores an entry stamped t.
func (s *scratch) keeps(t time.Time) bool { return !t.After(s.newest) && !t.Before(s.oldest) }

// startChunk prepares s for the records of one chunk: its id for insertIds, and the first
// time in it that is not too far ahead.
func (s *scratch) startChunk(b *core.Batch, now time.Time, retention time.Duration) {
	// An hour's margin under the retention: the entry must still be kept when it arrives.
	s.oldest, s.newest = now.Add(-retention+time.Hour), now.Add(maxFuture)
	for i := range b.Records {
		if t := b.Records[i].Time(); s.firstSane.IsZero() && s.keeps(t) {
			s.firstSane = t
		}
	}
	s.conv.budget = maxFlushValues
	// The chunk's bytes hold every record's time and body: one pass over them, not one per
	// record (the ledger's, when the output has one).
	sum := b.Sum
	if sum == 0 {
		sum = core.ChunkSum(b.Tag, b.Data)
	}
	const hexdigits = "0123456789abcdef"
	for i := 15; i >= 0; i-- {
		s.chunk[i] = hexdigits[sum&15]
		sum >>= 4
	}
}

// insertID is the i-th record's of the chunk: the same every time the chunk is sent, so that
// Cloud Logging drops the copies a retry writes (it deduplicates entries whose insertId and
// timestamp both match), and different for two equal lines of different chunks, which are
// two writes. docs/behaviour.md (insertId) gives the limits.
func (s *scratch) insertID(i int) string {
	if cap(s.ids)-len(s.ids) < 40 {
		s.ids = make([]byte, 0, 24*slab)
	}
	start := len(s.ids)
	s.ids = strconv.AppendInt(append(append(s.ids, s.chunk...), '-'), int64(i), 10)
	id := s.ids[start:]
	return unsafe.String(unsafe.SliceData(id), len(id)) // the slab is never written again
}
