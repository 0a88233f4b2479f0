// Package stackdriver is trailstack's Google Cloud Logging destination: records mapped as
// GKE's own agent maps them (k8s_container), written synchronously with
// cloud.google.com/go/logging's apiv2 WriteLogEntries, with insertIds that make retries safe.
package stackdriver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/compute/metadata"
	logging "cloud.google.com/go/logging/apiv2"
	"cloud.google.com/go/logging/apiv2/loggingpb"
	"github.com/googleapis/gax-go/v2"
	"google.golang.org/api/option"
	"google.golang.org/genproto/googleapis/api/monitoredres"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/trailstack/trailstack/accessor"
	"github.com/trailstack/trailstack/core"
	"github.com/trailstack/trailstack/metrics"
)

type sink struct {
	clock   core.Clock // decides whether a timestamp is too far ahead
	client  *logging.Client
	m       *mapper
	log     *core.Logger
	timeout time.Duration
	scratch sync.Pool // *scratch
	backoff core.Backoff
	refused core.Every // one log line per interval about refused entries
	shaped  core.Every // and about payloads sent as text or cut short
	met     *metrics.Instance
}

// Kind is the Cloud Logging destination.
var Kind = core.Kind{Name: "stackdriver", Parse: func(p *core.Parser) core.Config { return Parse(p) }}

// Config is the Cloud Logging sink's keys, parsed and checked. What they leave out (project,
// cluster, location) Build asks the metadata server for.
type Config struct {
	project, cluster, location string
	credsFile, endpoint        string
	plaintext                  bool
	fallback                   string
	timeout                    time.Duration
	ex                         *accessor.Extractor // the fields logName and nodeName read
	logName, nodeName          *accessor.Template
}

// Parse reads the Cloud Logging sink's keys; its errors are p's.
func Parse(p *core.Parser) *Config {
	c := &Config{
		project:   p.String("project_id", ""),
		cluster:   p.String("cluster_name", ""),
		location:  p.String("cluster_location", ""),
		credsFile: p.String("credentials_file", ""),
		endpoint:  p.String("endpoint", ""),
		plaintext: p.Bool("endpoint_plaintext", false),
		fallback:  p.Enum("fallback_resource", "k8s_node", "k8s_node", "generic_node", "global"),
		timeout:   p.Duration("timeout", 30*time.Second, time.Second, 10*time.Minute),
		ex:        accessor.NewExtractor(),
	}
	c.logName = accessor.Key(p, c.ex, "log_name", "$stream||$TAG")
	c.nodeName = accessor.Key(p, c.ex, "node_name", "${NODE_NAME}||$kubernetes['host']")
	if c.plaintext && c.endpoint == "" {
		p.Fail("endpoint_plaintext", "needs an endpoint")
	}
	return c
}

// Build starts the Cloud Logging client, asking the GCE metadata server for the project,
// cluster and location the keys leave out.
func (c *Config) Build(env core.Env) (core.Sink, error) {
	project, cluster, location, credsFile, endpoint := c.project, c.cluster, c.location, c.credsFile, c.endpoint
	if project == "" && credsFile != "" {
		project = projectFromKeyFile(credsFile)
	}
	md := metadata.NewClient(&http.Client{Timeout: 3 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var mdErr error
	fromMetadata := func(key, what string, get func(context.Context) (string, error)) string {
		v, err := get(ctx)
		if (err != nil || v == "") && mdErr == nil {
			mdErr = core.KeyError(key, "not set, and the GCE metadata server gave no %s (%v): set it in the configuration", what, err)
		}
		return strings.TrimSpace(v)
	}
	if project == "" {
		project = fromMetadata("project_id", "project ID", md.ProjectIDWithContext)
	}
	if cluster == "" {
		cluster = fromMetadata("cluster_name", "instance/attributes/cluster-name", func(c context.Context) (string, error) {
			return md.InstanceAttributeValueWithContext(c, "cluster-name")
		})
	}
	if location == "" {
		location = fromMetadata("cluster_location", "instance/attributes/cluster-location", func(c context.Context) (string, error) {
			return md.InstanceAttributeValueWithContext(c, "cluster-location")
		})
	}
	if mdErr != nil {
		return nil, mdErr
	}

	// A request is a chunk, about 2 MB: written in large pieces rather than gRPC's default
	// 32 KiB, which took a write system call every two HTTP/2 frames.
	opts := []option.ClientOption{option.WithGRPCDialOption(grpc.WithWriteBufferSize(1 << 20))}
	if endpoint != "" {
		opts = append(opts, option.WithEndpoint(endpoint))
	}
	if c.plaintext {
		opts = append(opts, option.WithoutAuthentication(),
			option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
	} else if credsFile != "" {
		opts = append(opts, option.WithAuthCredentialsFile(option.ServiceAccount, credsFile))
	}
	client, err := logging.NewClient(context.Background(), opts...)
	if err != nil {
		return nil, fmt.Errorf("cloud logging client: %w", err)
	}
	s := &sink{client: client, m: newMapper(project, location, cluster, c.fallback, c.ex), log: env.Log, timeout: c.timeout}
	s.refused.Interval = 10 * time.Second
	s.met = env.Metrics
	s.shaped.Interval = 10 * time.Second
	s.m.logName, s.m.nodeName = c.logName, c.nodeName
	s.scratch.New = func() any { return s.m.newScratch() }
	env.Log.Infof("Cloud Logging: project %s, cluster %s in %s", project, cluster, location)
	return s, nil
}

func projectFromKeyFile(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	var k struct {
		ProjectID string `json:"project_id"`
	}
	_ = json.Unmarshal(b, &k)
	return k.ProjectID
}

// Deliver maps the batch, writes it in requests under the API's size limit, and answers
// Delivered once every request succeeded (entries Cloud Logging rejected one by one are
// dropped with a log line; retrying them could never succeed).
func (s *sink) Deliver(ctx context.Context, b *core.Batch) core.Result {
	if err := s.backoff.Check("Cloud Logging"); err != nil {
		return core.Result{Status: core.Retry, Err: err}
	}
	// One deadline for the whole flush, however many requests it takes: the shutdown
	// budget in conf/ rests on that bound.
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	sc := s.scratch.Get().(*scratch)
	defer func() {
		sc.reset()
		s.scratch.Put(sc)
	}()
	now := s.clock.Now()
	var truncated, refused int
	send := func(g *group) core.Result {
		if len(g.req.Entries) == 0 {
			return core.Result{Status: core.Delivered}
		}
		hoistLogName(g.req)
		res := s.write(ctx, g.req)
		g.req, g.size = &loggingpb.WriteLogEntriesRequest{PartialSuccess: true, Resource: g.key.res, Labels: g.labels}, 0
		refused += res.Refused
		res.Refused, res.Truncated = refused, truncated
		return res
	}
	sc.startChunk(b, now)
	for i := range b.Records {
		e := s.m.entry(&b.Records[i], i, b.Tag, sc, now)
		// What an entry shares with others (its resource, its pod's labels) goes once into
		// a request, whose defaults the API applies to every entry that lacks them:
		// encoding those maps per entry cost more than all the rest. So entries are
		// gathered by what they share, one request each. Not by log name: a request per
		// stream doubled the requests and the flush's wait for one string per stderr
		// line saved (hoistLogName).
		k := hoist{res: e.Resource, gen: -1}
		var labels map[string]string
		if sc.pod != nil {
			k.gen, labels = sc.pod.gen, sc.pod.labels
		}
		g := sc.group(k, labels)
		if g == nil {
			// More kinds of entry than requests kept open: send them all and start again.
			for j := range sc.groups {
				if res := send(&sc.groups[j]); res.Status != core.Delivered {
					return res
				}
			}
			sc.groups = sc.groups[:0]
			g = sc.group(k, labels)
		}
		e.Resource = nil // the request's
		n := estimateSize(e, sc.conv.bound)
		if n > entryBudget/2 {
			if n = proto.Size(e); n > entryBudget {
				n = shrink(e, n)
				truncated++
			}
		}
		if g.size+n > maxRequestBytes {
			if res := send(g); res.Status != core.Delivered {
				return res
			}
		}
		g.req.Entries = append(g.req.Entries, e)
		g.size += n + 8
	}
	if sc.textual > 0 || sc.conv.tooDeep > 0 {
		if ok, more := s.shaped.Allow(); ok {
			s.log.Warnf("chunk (tag %s): %d JSON payloads sent as text, cut at %d bytes (larger than an entry may be, or past the %d values a flush converts); %d values nested deeper than %d levels written as null (%d such lines held back in the last %v)",
				b.Tag, sc.textual, entryBudget-1024, maxFlushValues, sc.conv.tooDeep, maxDepth/2, more, s.shaped.Interval)
		}
	}
	for j := range sc.groups {
		if res := send(&sc.groups[j]); res.Status != core.Delivered {
			return res
		}
	}
	return core.Result{Status: core.Delivered, Refused: refused, Truncated: truncated}
}

// hoist is what a request carries for all its entries: their resource and pod labels (by
// their cachedPod's number; -1 for none).
type hoist struct {
	res *monitoredres.MonitoredResource
	gen int
}

// hoistLogName makes the log name most of a request's entries have the request's, and
// takes it off them; the others keep theirs.
func hoistLogName(req *loggingpb.WriteLogEntriesRequest) {
	type count struct {
		name string
		n    int
	}
	var counts [4]count // a chunk has a log name or two (stdout, stderr): more are not counted
	for _, e := range req.Entries {
		for i := range counts {
			if c := &counts[i]; c.name == e.LogName || c.n == 0 {
				c.name = e.LogName
				c.n++
				break
			}
		}
	}
	best := counts[0]
	for _, c := range counts[1:] {
		if c.n > best.n {
			best = c
		}
	}
	req.LogName = best.name
	for _, e := range req.Entries {
		if e.LogName == best.name {
			e.LogName = ""
		}
	}
}

// group is a request being filled with the entries of one hoist.
type group struct {
	key    hoist
	labels map[string]string
	req    *loggingpb.WriteLogEntriesRequest
	size   int
}

// maxGroups bounds the requests a flush fills at once.
const maxGroups = 8

// group finds the request for k's entries, opening one if there is room; nil if not.
func (s *scratch) group(k hoist, labels map[string]string) *group {
	for i := len(s.groups) - 1; i >= 0; i-- {
		if s.groups[i].key == k {
			return &s.groups[i]
		}
	}
	if len(s.groups) == maxGroups {
		return nil
	}
	s.groups = append(s.groups, group{key: k, labels: labels,
		req: &loggingpb.WriteLogEntriesRequest{PartialSuccess: true, Resource: k.res, Labels: labels}})
	return &s.groups[len(s.groups)-1]
}

// estimateSize bounds an entry's encoded size from above without encoding it (proto.Size
// cost as much as the encoding itself, and twice that for a JSON payload's maps):
// payloadBound bounds its JSON payload and what was lifted out of it (see converter.bound).
func estimateSize(e *loggingpb.LogEntry, payloadBound int) int {
	if e.Resource != nil {
		return proto.Size(e)
	}
	n := 128 + len(e.GetTextPayload()) + len(e.LogName) + len(e.InsertId) + len(e.Trace) + len(e.SpanId) +
		len(e.ProtoReflect().GetUnknown()) // a JSON payload encoded already (appendBody)
	if e.GetJsonPayload() != nil {
		n += payloadBound
	}
	if e.HttpRequest != nil {
		n += 16 * valueOverhead // its fields' values are in payloadBound; this is their framing
	}
	for k, v := range e.Labels {
		n += len(k) + len(v) + 8
	}
	if sl := e.SourceLocation; sl != nil {
		n += len(sl.File) + len(sl.Function) + 16
	}
	if op := e.Operation; op != nil {
		n += len(op.Id) + len(op.Producer) + 8
	}
	return n
}

// write sends one request, synchronously: the flush answers only when Cloud Logging has.
// When the service refuses the request as a whole (INVALID_ARGUMENT without per-entry
// errors), one bad entry must not cost the others: the request is split in halves and each
// half sent again, down to single entries, so that only the entries refused on their own are
// dropped. A chunk of n entries with one bad entry takes about 2·log2(n) more requests.
func (s *sink) write(ctx context.Context, req *loggingpb.WriteLogEntriesRequest) core.Result {
	// No retries inside the client: a failed flush answers RETRY at once and Fluent Bit's
	// scheduler, which keeps the chunk, decides when to try again.
	start := time.Now()
	_, err := s.client.WriteLogEntries(ctx, req, gax.WithRetry(nil))
	s.met.RequestDuration.Observe(time.Since(start).Seconds())
	s.met.Requests(status.Code(err).String()).Inc()
	switch {
	case err == nil:
		s.backoff.Succeeded()
	case status.Code(err) == codes.DeadlineExceeded && !errors.Is(ctx.Err(), context.Canceled):
		// The service did not answer in time: the flushes queued behind this one answer
		// at once for a while instead of each waiting out the timeout (a cancelled flush,
		// at shutdown, says nothing about the service).
		s.backoff.Failed(err, true)
	case refusedWhole(err):
		if len(req.Entries) == 1 {
			s.logRefused(1, len(req.Entries), fmt.Sprintf("entry %s: %v", req.Entries[0].InsertId, status.Convert(err).Message()))
			s.met.Rejected.Inc()
			return core.Result{Status: core.Delivered, Refused: 1}
		}
		var refused int
		half := len(req.Entries) / 2
		for _, part := range [][]*loggingpb.LogEntry{req.Entries[:half], req.Entries[half:]} {
			sub := &loggingpb.WriteLogEntriesRequest{LogName: req.LogName, Resource: req.Resource, Labels: req.Labels, PartialSuccess: true, Entries: part}
			res := s.write(ctx, sub)
			if res.Status != core.Delivered {
				return res
			}
			refused += res.Refused
		}
		return core.Result{Status: core.Delivered, Refused: refused}
	}
	res := classify(err)
	if pe := partialErrors(err); pe != nil {
		// partial_success: the valid entries were written; these never will be.
		first := slices.Min(slices.Collect(maps.Keys(pe.LogEntryErrors)))
		s.logRefused(len(pe.LogEntryErrors), len(req.Entries), fmt.Sprintf("entry %s: %s", req.Entries[first].GetInsertId(), pe.LogEntryErrors[first].GetMessage()))
		res.Refused = len(pe.LogEntryErrors)
		s.met.Rejected.Add(float64(res.Refused))
	}
	return res
}

// logRefused says which entries Cloud Logging refused, at most once per interval.
func (s *sink) logRefused(n, of int, first string) {
	if ok, more := s.refused.Allow(); ok {
		s.log.Errorf("Cloud Logging refused %d of %d entries of a request, dropped (the rest are written); first: %s (%d such lines held back in the last %v)", n, of, first, more, s.refused.Interval)
	}
}

// refusedWhole is an INVALID_ARGUMENT answer that names no entry: the whole request was
// refused, valid entries included.
func refusedWhole(err error) bool {
	return status.Code(err) == codes.InvalidArgument && partialErrors(err) == nil
}

func partialErrors(err error) *loggingpb.WriteLogEntriesPartialErrors {
	for _, d := range status.Convert(err).Details() {
		if pe, ok := d.(*loggingpb.WriteLogEntriesPartialErrors); ok && len(pe.LogEntryErrors) > 0 {
			return pe
		}
	}
	return nil
}

// classify turns the API's answer into ours. See the README's outcome table. A request
// refused as a whole never reaches it (write splits it).
func classify(err error) core.Result {
	if err == nil {
		return core.Result{Status: core.Delivered}
	}
	st, ok := status.FromError(err)
	if !ok {
		return core.Result{Status: core.Retry, Err: err}
	}
	switch st.Code() {
	case codes.InvalidArgument:
		// partial_success: the valid entries were written; write logs the others.
		return core.Result{Status: core.Delivered}
	case codes.Unauthenticated, codes.PermissionDenied:
		return core.Result{Status: core.Retry, Err: fmt.Errorf("%w (check the node's service account or Workload Identity has roles/logging.logWriter)", err)}
	case codes.NotFound:
		return core.Result{Status: core.Retry, Err: fmt.Errorf("%w (check project_id)", err)}
	}
	return core.Result{Status: core.Retry, Err: err}
}

// shrink cuts an entry over the API's size limit down to size, keeping it rather than
// failing the request: a long text is cut and marked, a large JSON payload becomes its JSON
// text, cut and marked.
func shrink(e *loggingpb.LogEntry, size int) int {
	var text string
	switch p := e.Payload.(type) {
	case *loggingpb.LogEntry_TextPayload:
		text = p.TextPayload
	case *loggingpb.LogEntry_JsonPayload:
		// Its JSON text may be far smaller than its protobuf (a number is a byte or two of
		// text, eleven of protobuf): measure again as text before cutting.
		b, _ := p.JsonPayload.MarshalJSON()
		text = string(b)
		e.Payload = &loggingpb.LogEntry_TextPayload{TextPayload: text}
		if size = proto.Size(e); size <= entryBudget {
			return size
		}
	}
	over := size - entryBudget
	keep := len(text) - over - len(core.TruncMark) - 64
	if keep < 0 {
		keep = 0
	}
	e.Payload = &loggingpb.LogEntry_TextPayload{TextPayload: truncateUTF8(text, keep+len(core.TruncMark))}
	if n := proto.Size(e); n <= entryBudget {
		return n
	}
	// Still too big: labels or other fields fill it; keep only what identifies the entry.
	e.Labels, e.HttpRequest, e.SourceLocation, e.Operation = nil, nil, nil, nil
	return proto.Size(e)
}

func (s *sink) Close() error { return s.client.Close() }
