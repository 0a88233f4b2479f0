package core

import (
	"context"
	"fmt"
	"os"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/trailstack/trailstack/exceptions"
	"github.com/trailstack/trailstack/kubemeta"
	"github.com/trailstack/trailstack/metrics"
	"github.com/trailstack/trailstack/record"
)

// Instance is one [OUTPUT] section: its sink, and the bookkeeping that lets Fluent Bit's
// workers flush into it concurrently and shut it down without losing a flush in flight.
type Instance struct {
	Name string
	log  *Logger
	sink Sink

	shutdownTimeout time.Duration
	ctx             context.Context // cancelled when shutdown can wait no longer
	cancel          context.CancelFunc

	mu       sync.Mutex // guards closing, so that no flush starts once Close waits on inflight
	closing  bool
	inflight sync.WaitGroup

	// chunkBytes bounds the chunk bytes being delivered at once (inflight_limit): what a
	// flush builds is a few times its chunk, and a backlog drains in 2 MB chunks on every
	// worker at once. Small chunks, a node's normal flushes, never wait for it.
	chunkBytes    *semaphore.Weighted
	chunkBytesMax int64

	batches sync.Pool // *batch, reused across flushes
	joiner  *joiner   // nil: traces are not joined
	metrics *metrics.Instance
	health  health // what the log has said of failures, to say each cause once a minute

	// ledger is what the destination confirmed, by chunk (nil: no ledger_dir, or none could
	// be opened): a chunk the engine replays after a restart is not sent again.
	ledger      *Ledger
	account     *Accountant  // nil without account_logs
	skipLog     Every        // the replay line, once a minute at most
	skippedRecs atomic.Int64 // records skipped since the replay line was last logged

	flushes, delivered, retries, failures, refused, skipped atomic.Int64
}

// NewInstance reads the instance's keys through get and builds its sink, of one of kinds.
// An error names the key at fault.
func NewInstance(name string, get Getter, kinds []Kind) (*Instance, error) {
	return newInstance(name, get, kinds, NewLogger(name, os.Stderr))
}

func newInstance(name string, get Getter, kinds []Kind, log *Logger) (*Instance, error) {
	p := NewParser(get)
	c, err := parseInstance(p, get, kinds)
	if err != nil {
		return nil, err
	}
	if c.metricsListen != "" {
		bound, err := metrics.Listen(c.metricsListen)
		if err != nil {
			return nil, KeyError("metrics_listen", "%v", err)
		}
		log.Infof("metrics on http://%s/metrics", bound)
	}
	if c.kubeListen != "" {
		kc, err := kubemeta.InCluster(c.kubeNode)
		if err != nil {
			return nil, KeyError("kube_metadata_listen", "%v", err)
		}
		bound, err := kubemeta.Start(c.kubeListen, kc, log)
		if err != nil {
			return nil, KeyError("kube_metadata_listen", "%v", err)
		}
		log.Infof("Kubernetes metadata of node %s on http://%s", kc.Node, bound)
	}
	if c.stateDir != "" {
		if err := metrics.WatchStateDisk(c.stateDir); err != nil {
			log.Warnf("state_dir: its free space is not exported: %v", err)
		}
	}
	m := metrics.NewInstance(name, c.sink)
	env := Env{Log: log, Metrics: m}
	// What the configuration file gets wrong failed above. A value from the environment
	// cannot heal before a restart; what Build needs (a metadata server, credentials, a CA
	// file from a Secret) may: either way the output waits, not started, and the others go on.
	var sink Sink
	if err := p.Deferred(); err != nil {
		sink = notStarted(err, nil, log, m)
	} else if built, err := c.cfg.Build(env); err != nil {
		sink = notStarted(err, func() (Sink, error) { return c.cfg.Build(env) }, log, m)
	} else {
		sink = built
		m.Ready.Set(1)
	}
	in := &Instance{Name: name, log: log, sink: sink, shutdownTimeout: c.shutdownTimeout, metrics: m,
		chunkBytes: semaphore.NewWeighted(c.inflightLimit), chunkBytesMax: c.inflightLimit}
	in.ctx, in.cancel = context.WithCancel(context.Background())
	in.batches.New = func() any { return &batch{recs: make([]record.Record, 0, 1024)} }
	in.joiner = newJoiner(c.exceptions)
	in.skipLog = Every{Interval: time.Minute}
	if c.ledgerDir != "" {
		in.ledger = openInstanceLedger(c, log, m)
	}
	if c.account.Links != "" {
		in.account = NewAccountant(c.account, nil, log, m)
	}
	log.Infof("initialised: %s", p.Effective())
	return in, nil
}

// openInstanceLedger opens the output's ledger, named by its sink and destination. One that
// cannot be opened leaves the output without: it runs, and a replayed chunk is sent again.
func openInstanceLedger(c instanceConfig, log *Logger, m *metrics.Instance) *Ledger {
	dest := c.sink
	if d, ok := c.cfg.(interface{ Destination() string }); ok {
		dest += " " + d.Destination()
	}
	l, err := OpenLedger(LedgerPath(c.ledgerDir, c.sink, dest), c.ledgerMaxAge, c.ledgerMaxEntries, log)
	if err != nil {
		log.Warnf("ledger_dir: no ledger (%v): a chunk the engine replays after a restart is sent again", err)
		return nil
	}
	l.onSync = func(entries int, size int64) {
		m.LedgerEntries.Set(float64(entries))
		m.LedgerBytes.Set(float64(size))
	}
	log.Infof("ledger %s: %d chunks confirmed", l.path, l.Entries())
	return l
}

// instanceConfig is an instance's keys, parsed: the sink's and those of every instance.
type instanceConfig struct {
	sink             string
	cfg              Config
	shutdownTimeout  time.Duration
	metricsListen    string
	inflightLimit    int64
	kubeListen       string // the pod lookups' endpoint, where the filter's Kube_URL points
	kubeNode         string
	exceptions       exceptions.Language // whose stack traces are joined
	stateDir         string              // whose filesystem's free space is exported
	ledgerDir        string              // where the output's ledger is kept; "" for none
	ledgerMaxAge     time.Duration
	ledgerMaxEntries int
	account          AccountConfig // Links "" for none
}

// batch is a flush's records and what joining their traces needs.
type batch struct {
	recs  []record.Record
	join  joinScratch
	offs  []int64 // the records' offsets in their files, for the accountant
	times []int64
}

// parseInstance reads the sink key, the keys every instance has, then the sink's own.
func parseInstance(p *Parser, get Getter, kinds []Kind) (instanceConfig, error) {
	var c instanceConfig
	names := kindNames(kinds)
	if get.Get("sink") == "" {
		return c, fmt.Errorf("config key \"sink\" is required: one of %s", strings.Join(names, ", "))
	}
	c.sink = p.Enum("sink", "", names...)
	c.shutdownTimeout = p.Duration("shutdown_timeout", 5*time.Second, 0, 10*time.Minute)
	c.metricsListen = p.String("metrics_listen", "")
	c.inflightLimit = p.Size("inflight_limit", 16<<20, 64<<10, 1<<30)
	c.kubeListen = p.String("kube_metadata_listen", "")
	c.stateDir = p.String("state_dir", "")
	c.ledgerDir = p.String("ledger_dir", "")
	c.ledgerMaxAge = p.Duration("ledger_max_age", 72*time.Hour, time.Minute, 365*24*time.Hour)
	c.ledgerMaxEntries = p.Int("ledger_max_entries", 1000000, 1000, 100000000)
	c.account = AccountConfig{
		Links:      p.String("account_logs", ""),
		Storage:    p.String("storage_path", ""),
		TagPrefix:  p.String("account_tag_prefix", "kube.var.log.containers."),
		MaxLine:    p.Size("account_max_line", 512<<10, 1<<10, 1<<30),
		RotateWait: p.Duration("account_rotate_wait", 30*time.Second, time.Second, time.Hour),
		Interval:   p.Duration("account_interval", 5*time.Second, 100*time.Millisecond, 10*time.Minute),
		Grace:      p.Duration("account_grace", 30*time.Second, 0, time.Hour),
		RepairDir:  p.String("repair_dir", ""),
		RepairRate: p.Int("repair_rate", 1000, 1, 1000000),
	}
	if c.account.RepairDir != "" && c.account.Links == "" {
		p.Fail("repair_dir", "repairs what account_logs finds lost: set account_logs too")
	}
	if c.account.Links != "" && c.account.Storage == "" {
		p.Fail("storage_path", "account_logs needs the engine's storage.path here, to tell a line still buffered from one lost")
	}
	langs := p.String("exceptions", "all")
	var err error
	if c.exceptions, err = exceptions.ParseLanguages(langs); err != nil {
		p.Fail("exceptions", "%v", err)
	}
	node, _ := p.LookupEnv("NODE_NAME")
	c.kubeNode = p.String("kube_node", node)
	if err := p.Err(); err != nil {
		return c, err
	}
	c.cfg = kinds[slices.Index(names, c.sink)].Parse(p)
	return c, p.Err()
}

// Check reads an [OUTPUT] section's keys as Init would, without building the sink, and
// fails on a value that does not parse or a key that neither the plugin nor Fluent Bit reads.
func Check(keys MapGetter, kinds []Kind) error {
	err, _ := check(keys, kinds)
	return err
}

// check is Check, and the problem with a value usually set from the environment (which a
// running agent meets by starting the output not ready).
func check(keys MapGetter, kinds []Kind) (err, deferred error) {
	p := NewParser(keys)
	c, err := parseInstance(p, keys, kinds)
	if err != nil {
		return err, nil
	}
	read := map[string]bool{}
	for _, k := range p.Keys() {
		read[strings.ToLower(k)] = true
	}
	var unknown []string
	for k := range keys {
		if !read[strings.ToLower(k)] && !IsReserved(k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return &BadKeys{Keys: unknown, Err: fmt.Errorf("keys that sink %s does not read: %s", c.sink, strings.Join(unknown, ", "))}, nil
	}
	return nil, p.Deferred()
}

// Flush decodes one chunk and delivers its records, answering Delivered only when the sink
// confirmed every one of them. It never panics.
func (in *Instance) Flush(chunk []byte, tag string) (st Status) {
	if !in.enter() {
		in.log.Warnf("flush arrived after shutdown began; chunk kept for retry")
		return Retry
	}
	defer in.inflight.Done()
	in.flushes.Add(1)
	defer func() {
		if r := recover(); r != nil {
			in.log.Errorf("panic while flushing chunk (tag %s), kept for retry: %v\n%s", tag, r, debug.Stack())
			st = Retry
		}
		switch st {
		case Retry:
			in.retries.Add(1)
			in.metrics.FlushRetry.Inc()
		case Failed:
			in.failures.Add(1)
			in.metrics.FlushError.Inc()
		default:
			in.metrics.FlushOK.Inc()
		}
	}()

	bp := in.batches.Get().(*batch)
	defer func() {
		clear(bp.recs) // nothing that points into the chunk may outlive the flush
		clear(bp.join.out)
		in.batches.Put(bp)
	}()
	// A chunk of lines read back for this output (repair_dir) goes to the sink under the
	// tag the container's lines have, and is counted as repaired.
	sinkTag, repaired := tag, false
	if in.account != nil {
		sinkTag, repaired = in.account.repairedTag(tag)
	}
	var dec record.Decoder
	dec.Reset(chunk)
	recs := bp.recs[:0]
	var oldest lineTime // for the delivery lag
	for dec.Next() {
		r := dec.Record()
		oldest.least(r.Sec, r.Nsec, len(recs) == 0)
		recs = append(recs, *r)
	}
	bp.recs = recs
	if n, first := dec.Skipped(); n > 0 {
		in.log.Errorf("dropped %d events of a chunk (tag %s) that are not log records; first: %v", n, tag, first)
		in.metrics.Dropped("not_a_record").Add(float64(n))
	}
	corrupt := dec.Err()
	if len(recs) == 0 {
		if corrupt != nil {
			in.log.Errorf("dropping chunk (tag %s): %v", tag, corrupt)
			in.metrics.Dropped("corrupt_chunk").Inc()
			return Failed
		}
		return Delivered
	}

	// With a ledger, one pass over the chunk names it for the ledger and for the sink
	// (Cloud Logging's insertIds, which it takes itself otherwise).
	var sum uint64
	var id ChunkID
	if in.ledger != nil && corrupt == nil {
		sum = ChunkSum(tag, chunk)
		id = chunkID(sum, len(chunk))
		if in.ledger.Confirmed(id) {
			in.skip(len(recs), tag)
			if !repaired {
				in.accountFor(bp, tag)
			}
			return Delivered
		}
	}

	// A chunk larger than the limit goes alone.
	weight := min(int64(len(chunk)), in.chunkBytesMax)
	if err := in.chunkBytes.Acquire(in.ctx, weight); err != nil {
		in.log.Warnf("chunk (tag %s) kept for retry: shutting down", tag)
		return Retry
	}
	defer in.chunkBytes.Release(weight)
	start := time.Now()
	lines, traces := len(recs), 0
	if in.joiner != nil {
		recs, traces = in.joiner.join(recs, tag, &bp.join)
	}
	res := in.sink.Deliver(in.ctx, &Batch{Tag: sinkTag, Records: recs, Data: chunk, Sum: sum})
	m := in.metrics
	m.FlushDuration.Observe(time.Since(start).Seconds())
	m.FlushRecords.Observe(float64(lines))
	switch res.Status {
	case Delivered:
		// Counted in log lines, as Fluent Bit's input counts them: a joined trace
		// delivered is all its lines delivered.
		ok := lines - res.Refused
		m.TracesJoined.Add(float64(traces))
		in.delivered.Add(int64(ok))
		in.refused.Add(int64(res.Refused))
		m.Delivered.Add(float64(ok))
		if res.Refused > 0 {
			m.Dropped("rejected").Add(float64(res.Refused))
		}
		if res.Truncated > 0 {
			m.Truncated.Add(float64(res.Truncated))
		}
		now := time.Now()
		m.DeliveryLag.Observe(now.Sub(time.Unix(oldest.sec, oldest.nsec)).Seconds())
		m.LastSuccess.Set(float64(now.UnixNano()) / 1e9)
		in.health.recovered(in.log)
		if in.ledger != nil && corrupt == nil {
			in.ledger.Confirm(id)
		}
		if repaired {
			m.Repaired.Add(float64(ok))
		} else {
			in.accountFor(bp, tag)
		}
		if corrupt != nil {
			// What could be read is delivered; what follows the corruption cannot be.
			in.log.Errorf("delivered the %d records before the corruption, dropping the rest of the chunk (tag %s): %v", len(recs), tag, corrupt)
			m.Dropped("corrupt_chunk").Inc()
			return Failed
		}
		return Delivered
	case Failed:
		in.log.Errorf("dropping chunk of %d records (tag %s): %v", len(recs), tag, res.Err)
		m.Dropped("rejected").Add(float64(len(recs)))
		return Failed
	default:
		in.health.failed(in.log, len(recs), tag, res.Err)
		return Retry
	}
}

// accountFor hands the accountant the offsets of a delivered chunk's records, read from the
// records as decoded (before traces were joined).
func (in *Instance) accountFor(bp *batch, tag string) {
	if in.account == nil {
		return
	}
	bp.offs, bp.times = bp.offs[:0], bp.times[:0]
	for i := range bp.recs {
		if off, ok := bp.recs[i].FileOffset(); ok {
			bp.offs = append(bp.offs, off)
			bp.times = append(bp.times, bp.recs[i].Sec*1e9+bp.recs[i].Nsec)
		}
	}
	in.account.Confirmed(tag, bp.offs, bp.times, len(bp.recs))
}

// skip counts a chunk's records that the ledger says the destination confirmed, and says so
// once a minute at most.
func (in *Instance) skip(n int, tag string) {
	in.skipped.Add(int64(n))
	in.metrics.Skipped.Add(float64(n))
	total := in.skippedRecs.Add(int64(n))
	if ok, chunks := in.skipLog.Allow(); ok {
		in.skippedRecs.Add(-total)
		in.log.Infof("skipped %d records of %d chunks (last tag %s) that this destination already confirmed: the engine replayed them after a restart", total, chunks+1, tag)
	}
}

// lineTime is a record's time. The oldest is taken as the records are decoded, over the
// lines as they came rather than the joined traces: a chunk's records are mostly in order,
// but a retried chunk beside new ones need not be.
type lineTime struct{ sec, nsec int64 }

func (t *lineTime) least(sec, nsec int64, first bool) {
	if first || sec < t.sec || sec == t.sec && nsec < t.nsec {
		t.sec, t.nsec = sec, nsec
	}
}

func (in *Instance) enter() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.closing {
		return false
	}
	in.inflight.Add(1)
	return true
}

// Close refuses new flushes, waits up to shutdown_timeout for those in flight, then cancels
// them (they answer Retry, so their chunks stay with Fluent Bit) and closes the sink.
func (in *Instance) Close() {
	in.mu.Lock()
	already := in.closing
	in.closing = true
	in.mu.Unlock()
	if already {
		return
	}
	done := make(chan struct{})
	go func() { in.inflight.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(in.shutdownTimeout):
		in.log.Warnf("flushes still running after shutdown_timeout %v: cancelling them; their chunks are retried", in.shutdownTimeout)
		in.cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			in.log.Errorf("flushes still running after cancellation; closing anyway")
		}
	}
	in.cancel()
	if err := in.sink.Close(); err != nil {
		in.log.Warnf("closing sink: %v", err)
	}
	if in.ledger != nil {
		in.ledger.Close()
	}
	if in.account != nil {
		in.account.Close()
	}
	in.metrics.Remove() // an exited instance leaves no series behind
	in.log.Infof("exited after %d flushes: %d records delivered, %d retries, %d chunks dropped, %d records refused by the destination, %d records skipped as already confirmed",
		in.flushes.Load(), in.delivered.Load(), in.retries.Load(), in.failures.Load(), in.refused.Load(), in.skipped.Load())
}
