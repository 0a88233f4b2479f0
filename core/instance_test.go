package core

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/tinylib/msgp/msgp"
)

// fakeSink records what it was given and answers as told.
type fakeSink struct {
	mu      sync.Mutex // guards logs
	logs    []string
	answer  func(ctx context.Context, b *Batch) Result
	closed  atomic.Bool
	running atomic.Int32
}

func (f *fakeSink) Deliver(ctx context.Context, b *Batch) Result {
	f.running.Add(1)
	defer f.running.Add(-1)
	var lines []string
	for i := range b.Records {
		v, _ := b.Records[i].Lookup("log")
		s, _ := v.Bytes()
		lines = append(lines, string(s)) // copied: the chunk is not ours after Deliver
	}
	if f.answer != nil {
		if r := f.answer(ctx, b); r.Status != Delivered {
			return r
		}
	}
	f.mu.Lock()
	f.logs = append(f.logs, lines...)
	f.mu.Unlock()
	return Result{Status: Delivered}
}

func (f *fakeSink) Close() error { f.closed.Store(true); return nil }

// newTestInstance builds an instance around sink, logging into buf.
func newTestInstance(t *testing.T, sink *fakeSink, keys MapGetter) (*Instance, *bytes.Buffer) {
	t.Helper()
	fake := Kind{Name: "fake", Parse: func(*Parser) Config { return sink }}
	buf := &bytes.Buffer{}
	keys["sink"] = "fake"
	in, err := newInstance("trailstack.0", keys, []Kind{fake}, NewLogger("trailstack.0", buf))
	if err != nil {
		t.Fatal(err)
	}
	return in, buf
}

func (f *fakeSink) Build(Env) (Sink, error) { return f, nil }

func chunkOf(logs ...string) []byte {
	var bodies [][]byte
	for _, l := range logs {
		b := msgp.AppendMapHeader(nil, 1)
		b = msgp.AppendString(b, "log")
		bodies = append(bodies, msgp.AppendString(b, l))
	}
	return chunkOfBodies(bodies...)
}

// chunkOfBodies lays out events with these bodies, a second apart, in Fluent Bit's form.
func chunkOfBodies(bodies ...[]byte) []byte {
	var b []byte
	for i, body := range bodies {
		b = msgp.AppendArrayHeader(b, 2)
		b = msgp.AppendArrayHeader(b, 2)
		b = msgp.AppendInt64(b, int64(1700000000+i))
		b = msgp.AppendMapHeader(b, 0)
		b = append(b, body...)
	}
	return b
}

func TestFlushDelivers(t *testing.T) {
	s := &fakeSink{}
	in, logs := newTestInstance(t, s, MapGetter{})
	if st := in.Flush(chunkOf("a", "b"), "tag"); st != Delivered {
		t.Fatalf("status %v", st)
	}
	if st := in.Flush(nil, "tag"); st != Delivered {
		t.Fatalf("empty chunk: status %v", st)
	}
	in.Close()
	if strings.Join(s.logs, ",") != "a,b" || !s.closed.Load() {
		t.Fatalf("arrived %v, closed %v", s.logs, s.closed.Load())
	}
	if !strings.Contains(logs.String(), "exited after 2 flushes: 2 records delivered, 0 retries, 0 chunks dropped") {
		t.Errorf("log:\n%s", logs)
	}
}

func TestZeroStatusIsRetry(t *testing.T) {
	s := &fakeSink{answer: func(context.Context, *Batch) Result { return Result{} }}
	in, _ := newTestInstance(t, s, MapGetter{})
	if st := in.Flush(chunkOf("a"), "tag"); st != Retry {
		t.Fatalf("status %v, want retry", st)
	}
}

func TestFlushFailedAndRetryAreLogged(t *testing.T) {
	var answer atomic.Int32
	s := &fakeSink{answer: func(context.Context, *Batch) Result {
		return Result{Status: Status(answer.Load()), Err: errors.New("because")}
	}}
	in, logs := newTestInstance(t, s, MapGetter{})
	answer.Store(int32(Failed))
	if st := in.Flush(chunkOf("a"), "t1"); st != Failed {
		t.Fatalf("status %v", st)
	}
	answer.Store(int32(Retry))
	if st := in.Flush(chunkOf("a"), "t2"); st != Retry {
		t.Fatalf("status %v", st)
	}
	if n := testutil.ToFloat64(in.metrics.Dropped("rejected")); n != 1 {
		t.Errorf("a chunk the sink failed counted %v in rejected, want 1", n)
	}
	if !strings.Contains(logs.String(), "dropping chunk of 1 records (tag t1): because") ||
		!strings.Contains(logs.String(), "chunk of 1 records (tag t2) kept for retry: because") {
		t.Errorf("log:\n%s", logs)
	}
}

func TestCorruptChunkDeliversWhatCanBeReadThenFails(t *testing.T) {
	s := &fakeSink{}
	in, logs := newTestInstance(t, s, MapGetter{})
	c := chunkOf("a", "b")
	if st := in.Flush(c[:len(c)-1], "tag"); st != Failed {
		t.Fatalf("status %v", st)
	}
	if strings.Join(s.logs, ",") != "a" {
		t.Fatalf("arrived %v", s.logs)
	}
	if !strings.Contains(logs.String(), "delivered the 1 records before the corruption") {
		t.Errorf("log:\n%s", logs)
	}
	if n := testutil.ToFloat64(in.metrics.Dropped("corrupt_chunk")); n != 1 {
		t.Errorf("a chunk corrupt part way counted %v in corrupt_chunk, want 1", n)
	}
	// Corrupt from the first byte: nothing to deliver, the chunk is dropped with the reason.
	if st := in.Flush([]byte{0xc1}, "tag"); st != Failed {
		t.Fatalf("status %v", st)
	}
	if !strings.Contains(logs.String(), "dropping chunk (tag tag): corrupt chunk: event at byte 0 of 1") {
		t.Errorf("log:\n%s", logs)
	}
	if n := testutil.ToFloat64(in.metrics.Dropped("corrupt_chunk")); n != 2 {
		t.Errorf("corrupt_chunk %v after two corrupt chunks, want 2", n)
	}
}

func TestCorruptChunkRetriedWhenPrefixNotDelivered(t *testing.T) {
	s := &fakeSink{answer: func(context.Context, *Batch) Result { return Result{Status: Retry} }}
	in, _ := newTestInstance(t, s, MapGetter{})
	c := chunkOf("a", "b")
	if st := in.Flush(c[:len(c)-1], "tag"); st != Retry {
		t.Fatalf("status %v: a chunk whose readable records are not yet delivered must be kept", st)
	}
}

func TestInvalidEventsAreLoggedAndTheRestDelivered(t *testing.T) {
	s := &fakeSink{}
	in, logs := newTestInstance(t, s, MapGetter{})
	c := append(chunkOf("a"), msgp.AppendString(nil, "stray")...)
	c = append(c, chunkOf("b")...)
	if st := in.Flush(c, "tag"); st != Delivered {
		t.Fatalf("status %v", st)
	}
	if strings.Join(s.logs, ",") != "a,b" || !strings.Contains(logs.String(), "dropped 1 events of a chunk (tag tag) that are not log records") {
		t.Fatalf("arrived %v; log:\n%s", s.logs, logs)
	}
}

func TestPanicBecomesRetry(t *testing.T) {
	s := &fakeSink{answer: func(context.Context, *Batch) Result { panic("boom") }}
	in, logs := newTestInstance(t, s, MapGetter{})
	if st := in.Flush(chunkOf("a"), "tag"); st != Retry {
		t.Fatalf("status %v", st)
	}
	if !strings.Contains(logs.String(), "panic while flushing chunk (tag tag), kept for retry: boom") {
		t.Errorf("log:\n%s", logs)
	}
}

func TestCloseWaitsForFlushInFlight(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{})
	var calls atomic.Int32
	s := &fakeSink{answer: func(context.Context, *Batch) Result {
		if calls.Add(1) == 1 {
			close(started)
			<-release
		}
		return Result{Status: Delivered}
	}}
	in, logs := newTestInstance(t, s, MapGetter{"shutdown_timeout": "1m"})
	result := make(chan Status)
	go func() { result <- in.Flush(chunkOf("a"), "tag") }()
	<-started
	closed := make(chan struct{})
	go func() { in.Close(); close(closed) }()
	for !isClosing(in) {
		time.Sleep(time.Millisecond)
	}
	// Once Close has begun, a new flush is refused before it reaches the sink: kept for
	// retry, never delivered by an instance on its way out.
	if st := in.Flush(chunkOf("late"), "tag"); st != Retry {
		t.Fatalf("flush during shutdown: %v", st)
	}
	select {
	case <-closed:
		t.Fatal("Close returned while a flush was in flight")
	default:
	}
	close(release)
	if st := <-result; st != Delivered {
		t.Fatalf("in-flight flush: %v", st)
	}
	<-closed
	if !s.closed.Load() || strings.Join(s.logs, ",") != "a" || calls.Load() != 1 {
		t.Fatalf("closed %v, arrived %v, %d deliveries", s.closed.Load(), s.logs, calls.Load())
	}
	if !strings.Contains(logs.String(), "flush arrived after shutdown began; chunk kept for retry") {
		t.Errorf("log:\n%s", logs)
	}
}

func isClosing(in *Instance) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.closing
}

func TestCloseCancelsFlushAfterTimeout(t *testing.T) {
	started := make(chan struct{})
	s := &fakeSink{answer: func(ctx context.Context, _ *Batch) Result {
		close(started)
		<-ctx.Done()
		return Result{Status: Retry, Err: ctx.Err()}
	}}
	in, logs := newTestInstance(t, s, MapGetter{"shutdown_timeout": "10ms"})
	result := make(chan Status)
	go func() { result <- in.Flush(chunkOf("a"), "tag") }()
	<-started
	in.Close()
	if st := <-result; st != Retry {
		t.Fatalf("cancelled flush: %v", st)
	}
	if !strings.Contains(logs.String(), "cancelling them; their chunks are retried") {
		t.Errorf("log:\n%s", logs)
	}
}

func TestConcurrentFlushes(t *testing.T) {
	s := &fakeSink{}
	in, _ := newTestInstance(t, s, MapGetter{})
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				if st := in.Flush(chunkOf("x", "y", "z"), "tag"); st != Delivered {
					t.Errorf("status %v", st)
				}
			}
		}()
	}
	wg.Wait()
	in.Close()
	if len(s.logs) != 8*50*3 {
		t.Fatalf("%d records arrived, want %d", len(s.logs), 8*50*3)
	}
}

func TestRegistry(t *testing.T) {
	r := Registry{Kinds: []Kind{Null}}
	id1, in1, err := r.New(MapGetter{"sink": "null"})
	if err != nil {
		t.Fatal(err)
	}
	id2, in2, _ := r.New(MapGetter{"sink": "null"})
	if in1.Name != "trailstack.0" || in2.Name != "trailstack.1" || id1 == id2 {
		t.Fatalf("names %s %s ids %d %d", in1.Name, in2.Name, id1, id2)
	}
	if _, _, err := r.New(MapGetter{"sink": "nope"}); err == nil {
		t.Fatal("bad sink accepted")
	}
	if r.Get(id1) != in1 || r.Remove(id1) != in1 || r.Get(id1) != nil {
		t.Fatal("remove")
	}
	in1.Close()
	for _, in := range r.RemoveAll() {
		in.Close()
	}
	if len(r.byID) != 0 {
		t.Fatal("RemoveAll left instances")
	}
	// After every instance exited (a hot reload), names start from zero again and IDs go on.
	id3, in3, _ := r.New(MapGetter{"sink": "null"})
	if in3.Name != "trailstack.0" || id3 <= id2 {
		t.Fatalf("after reload: %s id %d", in3.Name, id3)
	}
	in3.Close()
}

func TestLogFormat(t *testing.T) {
	var buf bytes.Buffer
	l := NewLogger("trailstack.3", &buf)
	l.clock = func() time.Time { return time.Date(2026, 11, 26, 12, 0, 0, 7_900_000, time.UTC) }
	l.Warnf("x=%d", 1)
	if got := buf.String(); got != "[2026/11/26 12:00:00.007] [ warn] [output:trailstack:trailstack.3] x=1\n" {
		t.Errorf("line %q", got)
	}
}

// An outage is logged as the operator needs it: the first failure, then each cause once a
// minute with the count held back, then the recovery; never a line per retried chunk.
func TestFailuresAreLoggedOncePerCausePerMinute(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	n := 0
	sink := &fakeSink{answer: func(context.Context, *Batch) Result {
		n++
		return Result{Status: Retry, Err: fmt.Errorf("dial 10.0.0.%d:514: connection refused", n%7)}
	}}
	in, buf := newTestInstance(t, sink, MapGetter{})
	defer in.Close()
	in.health.clock = func() time.Time { return now }
	for i := 0; i < 100; i++ { // 100 chunks in 50 s
		in.Flush(chunkOf("x"), "t")
		now = now.Add(500 * time.Millisecond)
	}
	if got := strings.Count(buf.String(), "kept for retry"); got != 1 {
		t.Fatalf("%d lines in the first 50 s of one cause, want 1:\n%s", got, buf)
	}
	for i := 0; i < 40; i++ { // 20 s more: past the minute
		in.Flush(chunkOf("x"), "t")
		now = now.Add(500 * time.Millisecond)
	}
	if got := strings.Count(buf.String(), "kept for retry"); got != 2 || !strings.Contains(buf.String(), "more chunks kept for this cause in the last minute") {
		t.Fatalf("%d lines after 70 s, want 2 with a count:\n%s", got, buf)
	}
	sink.answer = nil
	in.Flush(chunkOf("x"), "t") // right after the last failure: not yet said to deliver again
	now = now.Add(recoveryQuiet)
	in.Flush(chunkOf("x"), "t")
	if got := strings.Count(buf.String(), "delivering again"); got != 1 || !strings.Contains(buf.String(), "delivering again after 140 retried chunks over 1m10s") {
		t.Fatalf("%d recovery lines, want 1:\n%s", got, buf)
	}
}

// A destination that refuses part of the load (a quota: every other request of 110
// containers' chunks refused, the successes in between) for two minutes: one line per cause
// a minute, with its count, however the successes interleave; the recovery once it ends.
func TestPartialPushbackIsLoggedOncePerCausePerMinute(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	n := 0
	sink := &fakeSink{answer: func(context.Context, *Batch) Result {
		if n++; n%2 == 0 {
			return Result{Status: Delivered}
		}
		return Result{Status: Retry, Err: fmt.Errorf("rpc error: code = ResourceExhausted desc = quota exceeded for %d bytes", 1000+n)}
	}}
	in, buf := newTestInstance(t, sink, MapGetter{})
	defer in.Close()
	in.health.clock = func() time.Time { return now }
	for i := 0; i < 120*110; i++ { // 110 containers' chunks a second, for two minutes
		in.Flush(chunkOf("x"), fmt.Sprintf("kube.c%d", i%110))
		now = now.Add(time.Second / 110)
	}
	if got := strings.Count(buf.String(), "kept for retry"); got != 2 {
		t.Fatalf("%d lines in two minutes, want 2 (one a minute):\n%s", got, buf)
	}
	if !strings.Contains(buf.String(), "(3300 more chunks kept for this cause in the last minute; failing since 1m0s)") || strings.Contains(buf.String(), "delivering again") {
		t.Fatalf("no count, or a recovery said while it lasts:\n%s", buf)
	}
	sink.answer = nil
	for i := 0; i < 20; i++ {
		in.Flush(chunkOf("x"), "kube.c0")
		now = now.Add(time.Second)
	}
	if got := strings.Count(buf.String(), "delivering again"); got != 1 {
		t.Fatalf("%d recovery lines, want 1:\n%s", got, buf)
	}
}

// inflight_limit bounds the chunk bytes delivered at once: with a limit of three chunks,
// eight workers flushing at once never have more than three in the sink, and every record
// is delivered; a chunk larger than the limit goes alone rather than never.
func TestInflightLimitBoundsChunkBytes(t *testing.T) {
	var most atomic.Int32
	s := &fakeSink{}
	s.answer = func(context.Context, *Batch) Result {
		for n := s.running.Load(); n > most.Load(); n = s.running.Load() {
			most.CompareAndSwap(most.Load(), n)
		}
		time.Sleep(5 * time.Millisecond)
		return Result{Status: Delivered}
	}
	chunk := chunkOf(strings.Repeat("x", 30<<10), strings.Repeat("y", 30<<10))
	in, _ := newTestInstance(t, s, MapGetter{"inflight_limit": fmt.Sprint(3 * len(chunk))})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 5 {
				if st := in.Flush(chunk, "tag"); st != Delivered {
					t.Errorf("status %v", st)
				}
			}
		})
	}
	wg.Wait()
	if m := most.Load(); m > 3 || m < 2 {
		t.Errorf("at most %d flushes in the sink at once, want 3 (the limit) and more than one", m)
	}
	big := chunkOf(strings.Repeat("z", 4*len(chunk)))
	if st := in.Flush(big, "tag"); st != Delivered {
		t.Errorf("a chunk over the limit: %v", st)
	}
	in.Close()
	if len(s.logs) != 8*5*2+1 {
		t.Fatalf("%d records arrived, want %d", len(s.logs), 8*5*2+1)
	}
}

// kube_metadata_listen outside a pod can never work: Init fails naming the key.
func TestKubeMetadataOutsideAPodFailsInit(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	fake := Kind{Name: "fake", Parse: func(*Parser) Config { return &fakeSink{} }}
	_, err := newInstance("trailstack.0", MapGetter{"sink": "fake", "kube_metadata_listen": "127.0.0.1:0"}, []Kind{fake}, NewLogger("trailstack.0", io.Discard))
	if err == nil || !strings.Contains(err.Error(), `"kube_metadata_listen"`) || !strings.Contains(err.Error(), "not running in a Kubernetes pod") {
		t.Fatalf("got %v", err)
	}
}

// The delivery lag is of the oldest line delivered, wherever it lies in the chunk.
func TestDeliveryLagIsOfTheOldestLine(t *testing.T) {
	s := &fakeSink{}
	in, _ := newTestInstance(t, s, MapGetter{})
	defer in.Close()
	now := time.Now()
	var chunk []byte
	for _, age := range []time.Duration{time.Minute, time.Hour, time.Second} {
		at := now.Add(-age)
		chunk = msgp.AppendArrayHeader(chunk, 2)
		chunk = msgp.AppendArrayHeader(chunk, 2)
		chunk = msgp.AppendInt64(chunk, at.Unix())
		chunk = msgp.AppendMapHeader(chunk, 0)
		chunk = msgp.AppendMapHeader(chunk, 1)
		chunk = msgp.AppendString(chunk, "log")
		chunk = msgp.AppendString(chunk, age.String())
	}
	if st := in.Flush(chunk, "tag"); st != Delivered {
		t.Fatalf("status %v", st)
	}
	var m dto.Metric
	if err := in.metrics.DeliveryLag.(prometheus.Metric).Write(&m); err != nil {
		t.Fatal(err)
	}
	h := m.GetHistogram()
	if h.GetSampleCount() != 1 || h.GetSampleSum() < time.Hour.Seconds() || h.GetSampleSum() > time.Hour.Seconds()+60 {
		t.Errorf("delivery lag: %d observations summing to %.0f s, want one of about 3600 s", h.GetSampleCount(), h.GetSampleSum())
	}
}
