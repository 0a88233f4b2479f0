package stackdriver

import (
	"bytes"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
	"unsafe"

	"cloud.google.com/go/logging/apiv2/loggingpb"
	"github.com/cespare/xxhash/v2"
	"github.com/tinylib/msgp/msgp"
	"google.golang.org/genproto/googleapis/api/monitoredres"
	ltype "google.golang.org/genproto/googleapis/logging/type"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/trailstack/trailstack/accessor"
	"github.com/trailstack/trailstack/core"
	"github.com/trailstack/trailstack/record"
)

// Cloud Logging's limits (cloud.google.com/logging/quotas).
const (
	maxEntryBytes   = 256 << 10 // one LogEntry, about
	entryBudget     = 250 << 10 // what we aim under, leaving room for the request's framing
	maxRequestBytes = 9 << 20   // under the 10 MB request limit
	maxLabels       = 64
	maxLabelValue   = 64 << 10
	maxFuture       = 24 * time.Hour // the API rejects timestamps further ahead
	specialPrefix   = "logging.googleapis.com/"
)

// mapper turns records into LogEntries the way GKE's own logging agent does.
type mapper struct {
	project, location, cluster string
	fallback                   string // k8s_node, generic_node or global
	logName, nodeName          *accessor.Template
	ex                         *accessor.Extractor
	slot                       struct {
		log, stream, severity, level, ns, pod, container, host, labels, owners int
	}
}

func newMapper(project, location, cluster, fallback string, ex *accessor.Extractor) *mapper {
	m := &mapper{project: project, location: location, cluster: cluster, fallback: fallback, ex: ex}
	m.slot.log = ex.Add([]string{"log"})
	m.slot.stream = ex.Add([]string{"stream"})
	m.slot.severity = ex.Add([]string{"severity"})
	m.slot.level = ex.Add([]string{"level"})
	m.slot.ns = ex.Add([]string{"kubernetes", "namespace_name"})
	m.slot.pod = ex.Add([]string{"kubernetes", "pod_name"})
	m.slot.container = ex.Add([]string{"kubernetes", "container_name"})
	m.slot.host = ex.Add([]string{"kubernetes", "host"})
	m.slot.labels = ex.Add([]string{"kubernetes", "labels"})
	m.slot.owners = ex.Add([]string{"kubernetes", "ownerReferences"})
	return m
}

// scratch is one flush's reusable state. A chunk holds the records of one container file,
// so consecutive records share their resource, log name and pod labels: those are built once
// and shared between entries (read-only; an entry that needs more labels copies them).
type scratch struct {
	vals []record.Value
	memo accessor.Memo // the last record's kubernetes map, nearly always the next one's
	buf  []byte
	// The container the tag names, for the last tag seen (a chunk has one tag).
	idTag string
	id    accessor.Identity

	// insertIds are <chunk>-<index>: chunk is a hash of the tag and of every record's time
	// and body, the same on every retry of the chunk (Fluent Bit hands the same bytes), and
	// different for any other chunk unless all its records are byte for byte the same.
	chunk []byte // 16 hex digits
	// A record stamped more than a day ahead takes the time of the last record before it
	// that is not (or, at the head of the chunk, of the first one after it): the same on
	// every retry, so the retry is a copy that Cloud Logging drops.
	anchor, firstSane time.Time

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

	groups []group // the flush's requests being filled, one per hoist

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
	clear(s.groups)
	s.groups = s.groups[:0]
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

func str(v record.Value) string {
	b, ok := v.Bytes()
	if !ok {
		return ""
	}
	return validString(b)
}

// startChunk prepares s for the records of one chunk: its id for insertIds, and the first
// time in it that is not too far ahead.
func (s *scratch) startChunk(b *core.Batch, now time.Time) {
	var h xxhash.Digest
	h.Reset()
	_, _ = h.WriteString(b.Tag)
	// The chunk's bytes hold every record's time and body: one pass over them, not one
	// per record.
	_, _ = h.Write(b.Data)
	for i := range b.Records {
		if t := b.Records[i].Time(); s.firstSane.IsZero() && !t.After(now.Add(maxFuture)) {
			s.firstSane = t
		}
	}
	s.conv.budget = maxFlushValues
	sum := h.Sum64()
	const hexdigits = "0123456789abcdef"
	for i := 15; i >= 0; i-- {
		s.chunk[i] = hexdigits[sum&15]
		sum >>= 4
	}
}

// entry maps the i-th record of the chunk. now is the time the flush began.
func (m *mapper) entry(r *record.Record, i int, tag string, s *scratch, now time.Time) *loggingpb.LogEntry {
	if tag != s.idTag {
		s.idTag, s.id = tag, accessor.ParseTag(tag)
	}
	m.ex.Extract(&s.id, record.Value(r.Body), s.vals, &s.memo)
	v := s.vals
	s.pod = nil
	e, stamp := s.newEntry()
	e.Resource = m.resource(v, tag, s)
	e.LogName = m.logNameOf(v, tag, s)

	var payload *structpb.Struct
	var jsonRaw []byte // the json_payload field, encoded (appendBody)
	var text string
	s.conv.bound = 0
	if lv := v[m.slot.log]; lv != nil {
		text = trimNewlines(chunkString(lv))
		if t := strings.TrimSpace(text); len(t) > 1 && t[0] == '{' && t[len(t)-1] == '}' {
			if n := jsonValues(t); len(t) <= entryBudget && n <= s.conv.budget {
				p := &structpb.Struct{}
				if p.UnmarshalJSON([]byte(t)) == nil {
					payload = p
					s.conv.budget -= n
					// Every value of the text is at most its own text (escapes only
					// shrink; a number's 8 bytes are in the overhead) and n counts them.
					s.conv.bound = len(t) + n*valueOverhead
				}
			} else {
				s.textual++ // stays text; shrink cuts it if it is too long
			}
		}
		if payload == nil {
			e.Payload = s.newText(text)
		}
	} else if body := record.Value(r.Body); len(body) <= entryBudget {
		// The kubernetes filter merged the application's JSON into the body: encoded
		// straight from msgpack, unless lift has fields to take out of it.
		if raw, ok := s.conv.appendBody(s.raw, body); ok {
			jsonRaw, s.raw = raw[len(s.raw):], raw
		} else {
			payload = s.conv.toStruct(body, true)
		}
	}
	if payload == nil && jsonRaw == nil && v[m.slot.log] == nil {
		s.textual++
		e.Payload = s.newText(jsonText(record.Value(r.Body), entryBudget-1024))
	}

	// Severity, as GKE's agent reads it: a severity (or level) field; a severity field it
	// does not understand gives DEFAULT and stays in the payload; a glog/klog line's
	// header; else the stream.
	ts := r.Time()
	e.Severity = ltype.LogSeverity_DEFAULT
	var sev sevState
	for _, sv := range []record.Value{v[m.slot.severity], v[m.slot.level]} {
		if sv == nil {
			continue
		}
		if got, ok := severityOf(sv); ok {
			e.Severity, sev.known = got, true
			break
		}
	}
	if v[m.slot.severity] != nil && !sev.known {
		sev.found = true
	}
	if payload != nil {
		if t, ok := m.lift(e, payload, &sev); ok {
			ts = t
		}
		e.Payload = &loggingpb.LogEntry_JsonPayload{JsonPayload: payload}
	} else if jsonRaw != nil {
		// Written as the field's bytes, which protobuf sends as they are.
		e.ProtoReflect().SetUnknown(protoreflect.RawFields(jsonRaw))
	} else if !sev.known && !sev.found {
		if gs, gt, ok := glogHeader(text, ts); ok {
			e.Severity, ts, sev.known = gs, gt, true
		}
	}
	if !sev.known && !sev.found {
		stream, _ := v[m.slot.stream].Bytes()
		switch string(stream) { // compared in place: no copy
		case "stderr":
			e.Severity = ltype.LogSeverity_ERROR
		case "stdout":
			e.Severity = ltype.LogSeverity_INFO
		}
	}

	if ts.After(now.Add(maxFuture)) {
		// The API refuses entries more than a day ahead: keep the record, stamped with a
		// neighbour's time (see scratch.anchor), with the time it claimed.
		addLabel(e, "trailstack/original_timestamp", ts.UTC().Format(time.RFC3339Nano))
		switch {
		case !s.anchor.IsZero():
			ts = s.anchor
		case !s.firstSane.IsZero():
			ts = s.firstSane
		default:
			ts = now // no record of the chunk has a usable time: a retry is not a copy
		}
	} else {
		s.anchor = ts
	}
	stamp.Seconds, stamp.Nanos = ts.Unix(), int32(ts.Nanosecond())
	e.Timestamp = stamp

	if e.Resource.GetType() == "k8s_container" {
		// What GKE's agent puts on every entry of a pod: the node, the pod's labels and its
		// top-level controller. They are the same for every entry of the pod, so they are
		// built once per pod and go once into the request's defaults, which Cloud Logging
		// merges under an entry's own labels.
		labels, owners := v[m.slot.labels], v[m.slot.owners]
		s.buf, _ = m.nodeName.Render(s.buf[:0], v, tag)
		for i := len(s.pods) - 1; i >= 0; i-- {
			if p := &s.pods[i]; bytes.Equal(labels, p.labelsRaw) && bytes.Equal(owners, p.ownersRaw) && string(s.buf) == p.node {
				s.pod = p
				break
			}
		}
		if s.pod == nil {
			node := string(s.buf)
			s.labelsGen++
			s.pods, s.pod = remember(s.pods, cachedPod{labels, owners, node, podLabels(labels, owners, node), s.labelsGen})
		}
	}

	if e.InsertId == "" {
		e.InsertId = s.insertID(i)
	}
	return e
}

// Labels GKE's agent writes on container entries.
const (
	labelNode           = "compute.googleapis.com/resource_name"
	labelControllerType = "logging.gke.io/top_level_controller_type"
	labelControllerName = "logging.gke.io/top_level_controller_name"
)

// podLabels builds the labels of a pod's entries: k8s-pod/<key> for each pod label, with the
// dots of the key as '_' (slashes kept), as GKE writes them; the node; and the top-level
// controller from the pod's ownerReferences (Owner_References On in the filter).
func podLabels(labels, owners record.Value, node string) map[string]string {
	out := map[string]string{}
	if node != "" {
		out[labelNode] = node
	}
	var hash string
	_ = labels.Range(func(k []byte, lv record.Value) bool {
		if string(k) == "pod-template-hash" {
			hash = str(lv)
		}
		if len(out) < maxLabels-2 {
			out["k8s-pod/"+strings.ReplaceAll(validString(k), ".", "_")] = truncateUTF8(str(lv), maxLabelValue)
		}
		return true
	})
	if kind, name := topController(owners, hash); kind != "" {
		out[labelControllerType], out[labelControllerName] = kind, name
	}
	return out
}

// cronJobSuffix is what a CronJob adds to the names of its Jobs: the scheduled time, in
// minutes since the epoch.
var cronJobSuffix = regexp.MustCompile(`^(.+)-[0-9]{8,}$`)

// topController reads the pod's controlling owner (the first one marked controller, else
// the first) and climbs as far as the name allows without the API: a ReplicaSet named
// <deployment>-<pod-template-hash> is a Deployment's, a Job named <cronjob>-<minutes> a
// CronJob's. Other kinds (StatefulSet, DaemonSet, a bare ReplicaSet or Job) are their own top.
func topController(owners record.Value, podTemplateHash string) (kind, name string) {
	it, _ := owners.Elems()
	for {
		o, ok := it.Next()
		if !ok {
			break
		}
		k, _ := o.Lookup("kind")
		nm, _ := o.Lookup("name")
		c, _ := o.Lookup("controller")
		isController, _, _ := msgp.ReadBoolBytes(c)
		if kind == "" || isController {
			kind, name = str(k), str(nm)
		}
		if isController {
			break
		}
	}
	switch kind {
	case "ReplicaSet":
		if base, ok := strings.CutSuffix(name, "-"+podTemplateHash); ok && podTemplateHash != "" {
			return "Deployment", base
		}
	case "Job":
		if m := cronJobSuffix.FindStringSubmatch(name); m != nil {
			return "CronJob", m[1]
		}
	}
	return kind, name
}

func (m *mapper) resource(v []record.Value, tag string, s *scratch) *monitoredres.MonitoredResource {
	nsB, _ := v[m.slot.ns].Bytes()
	podB, _ := v[m.slot.pod].Bytes()
	contB, _ := v[m.slot.container].Bytes()
	if len(nsB) > 0 && len(podB) > 0 && len(contB) > 0 {
		for i := len(s.resources) - 1; i >= 0; i-- {
			if r := &s.resources[i]; r.container && string(nsB) == r.ns && string(podB) == r.pod && string(contB) == r.cont {
				return r.res // shared: read-only
			}
		}
		c := cachedResource{ns: validString(nsB), pod: validString(podB), cont: validString(contB), container: true}
		c.res = &monitoredres.MonitoredResource{Type: "k8s_container", Labels: map[string]string{
			"project_id": m.project, "location": m.location, "cluster_name": m.cluster,
			"namespace_name": c.ns, "pod_name": c.pod, "container_name": c.cont,
		}}
		s.resources, _ = remember(s.resources, c)
		return c.res
	}
	// The fallback resource is the node's: shared by consecutive entries like a container's,
	// so that it goes once into the request's defaults instead of being encoded per entry.
	s.buf, _ = m.nodeName.Render(s.buf[:0], v, tag)
	for i := len(s.resources) - 1; i >= 0; i-- {
		if r := &s.resources[i]; !r.container && string(s.buf) == r.node {
			return r.res
		}
	}
	c := cachedResource{node: string(s.buf)}
	switch m.fallback {
	case "k8s_node":
		c.res = &monitoredres.MonitoredResource{Type: "k8s_node", Labels: map[string]string{
			"project_id": m.project, "location": m.location, "cluster_name": m.cluster, "node_name": c.node,
		}}
	case "generic_node":
		c.res = &monitoredres.MonitoredResource{Type: "generic_node", Labels: map[string]string{
			"project_id": m.project, "location": m.location, "namespace": m.cluster, "node_id": c.node,
		}}
	default:
		c.res = &monitoredres.MonitoredResource{Type: "global", Labels: map[string]string{"project_id": m.project}}
	}
	s.resources, _ = remember(s.resources, c)
	return c.res
}

// logNameOf is the entry's full log name, built once per log in the chunk.
func (m *mapper) logNameOf(v []record.Value, tag string, s *scratch) string {
	s.buf, _ = m.logName.Render(s.buf[:0], v, tag)
	for i := len(s.logNames) - 1; i >= 0; i-- {
		if string(s.buf) == s.logNames[i].id {
			return s.logNames[i].name
		}
	}
	c := cachedLogName{id: string(s.buf), name: "projects/" + m.project + "/logs/" + url.PathEscape(logID(s.buf))}
	s.logNames, _ = remember(s.logNames, c)
	return c.name
}

// logID keeps a log name to what the API accepts: letters, digits, and / _ - . , at most
// 512 bytes; anything else becomes _.
func logID(b []byte) string {
	if len(b) == 0 {
		return "stdout"
	}
	if len(b) > 512 {
		b = b[:512]
	}
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '/' || c == '_' || c == '-' || c == '.') {
			b[i] = '_'
		}
	}
	return string(b)
}

// insertID is the i-th record's of the chunk: the same every time the chunk is sent, so that
// Cloud Logging drops the copies a retry writes (it deduplicates entries whose insertId and
// timestamp both match), and different for two equal lines of different chunks, which are
// two writes. README: insertIds, with the limits.
func (s *scratch) insertID(i int) string {
	if cap(s.ids)-len(s.ids) < 40 {
		s.ids = make([]byte, 0, 24*slab)
	}
	start := len(s.ids)
	s.ids = strconv.AppendInt(append(append(s.ids, s.chunk...), '-'), int64(i), 10)
	id := s.ids[start:]
	return unsafe.String(unsafe.SliceData(id), len(id)) // the slab is never written again
}

func trimNewlines(s string) string {
	for len(s) > 0 && (s[len(s)-1] == '\n' || s[len(s)-1] == '\r') {
		s = s[:len(s)-1]
	}
	return s
}

// chunkString is a str or bin value as a string that points into the chunk when it is valid
// UTF-8 (a copy, repaired, when not). It must not outlive the flush: the requests holding it
// are encoded and sent before Deliver returns, and nothing keeps them.
func chunkString(v record.Value) string {
	b, ok := v.Bytes()
	if !ok || len(b) == 0 {
		return ""
	}
	if !utf8.Valid(b) {
		return strings.ToValidUTF8(string(b), "\uFFFD")
	}
	return unsafe.String(unsafe.SliceData(b), len(b))
}

func addLabel(e *loggingpb.LogEntry, k, v string) {
	if e.Labels == nil {
		e.Labels = map[string]string{}
	}
	if _, dup := e.Labels[k]; !dup && len(e.Labels) >= maxLabels {
		return
	}
	e.Labels[k] = truncateUTF8(v, maxLabelValue)
}

// lift moves Cloud Logging's special JSON fields out of the payload into the entry, as
// GKE's agent does.
// sevState is what an entry's severity came from: a field understood (known), or a severity
// field present but not understood (found: DEFAULT, and the field stays in the payload).
type sevState struct{ known, found bool }

// lift moves Cloud Logging's special fields out of a JSON payload into the entry, as GKE's
// agent does, and returns the time the payload gives, if any: timestamp{seconds,nanos},
// else timestampSeconds and timestampNanos, else time (RFC 3339); the field used is removed.
func (m *mapper) lift(e *loggingpb.LogEntry, p *structpb.Struct, sev *sevState) (time.Time, bool) {
	f := p.Fields
	take := func(k string) *structpb.Value {
		v := f[k]
		delete(f, k)
		return v
	}
	if !sev.known {
		if sv := f["severity"]; sv != nil {
			if got, ok := severityOfJSON(sv); ok {
				e.Severity, sev.known = got, true
				delete(f, "severity")
			} else {
				sev.found = true // DEFAULT, and the field stays
			}
		}
		if lv := f["level"]; !sev.known && !sev.found && lv != nil {
			if got, ok := severityOfJSON(lv); ok {
				e.Severity, sev.known = got, true
			}
		}
	} else if sv := f["severity"]; sv != nil {
		if _, ok := severityOfJSON(sv); ok {
			delete(f, "severity") // the one used
		}
	}
	var ts time.Time
	var tsOK bool
	if st := f["timestamp"].GetStructValue(); st != nil && st.Fields["seconds"] != nil {
		sec, _ := strconv.ParseInt(scalarString(st.Fields["seconds"]), 10, 64)
		ns, _ := strconv.ParseInt(scalarString(st.Fields["nanos"]), 10, 64)
		ts, tsOK = time.Unix(sec, ns), true
		delete(f, "timestamp")
	} else if f["timestampSeconds"] != nil {
		sec, _ := strconv.ParseInt(scalarString(take("timestampSeconds")), 10, 64)
		ns, _ := strconv.ParseInt(scalarString(take("timestampNanos")), 10, 64)
		ts, tsOK = time.Unix(sec, ns), true
	} else if t := f["time"].GetStringValue(); t != "" {
		if parsed, err := time.Parse(time.RFC3339Nano, t); err == nil {
			ts, tsOK = parsed, true
			delete(f, "time")
		}
	}
	if v := take(specialPrefix + "trace"); v != nil {
		e.Trace = v.GetStringValue()
		// A bare trace ID: the link to Cloud Trace needs the resource name.
		if isHex(e.Trace, 32) {
			e.Trace = "projects/" + m.project + "/traces/" + e.Trace
		}
	}
	if v := take(specialPrefix + "spanId"); v != nil {
		e.SpanId = v.GetStringValue()
	}
	if v := take(specialPrefix + "trace_sampled"); v != nil {
		e.TraceSampled = v.GetBoolValue() || v.GetStringValue() == "true"
	}
	if v := take(specialPrefix + "insertId"); v != nil && v.GetStringValue() != "" {
		e.InsertId = v.GetStringValue()
	}
	if v := take(specialPrefix + "labels"); v != nil {
		for k, lv := range v.GetStructValue().GetFields() {
			addLabel(e, k, scalarString(lv))
		}
	}
	if v := take(specialPrefix + "sourceLocation"); v != nil {
		sf := v.GetStructValue().GetFields()
		line, _ := strconv.ParseInt(scalarString(sf["line"]), 10, 64)
		e.SourceLocation = &loggingpb.LogEntrySourceLocation{
			File: scalarString(sf["file"]), Line: line, Function: scalarString(sf["function"]),
		}
	}
	if v := take(specialPrefix + "operation"); v != nil {
		of := v.GetStructValue().GetFields()
		e.Operation = &loggingpb.LogEntryOperation{
			Id: scalarString(of["id"]), Producer: scalarString(of["producer"]),
			First: of["first"].GetBoolValue(), Last: of["last"].GetBoolValue(),
		}
	}
	if v := take("httpRequest"); v != nil {
		e.HttpRequest = httpRequest(v.GetStructValue().GetFields())
	}
	return ts, tsOK
}

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// glogHeader reads the header of a glog/klog line, Lmmdd hh:mm:ss.uuuuuu (L one of I, W, E,
// F), as GKE's agent does for Kubernetes components: its severity, and its time, in UTC,
// in the year that puts it nearest the record's own time (the header has no year).
func glogHeader(line string, near time.Time) (ltype.LogSeverity, time.Time, bool) {
	if len(line) < 21 || line[5] != ' ' || line[8] != ':' || line[11] != ':' || line[14] != '.' {
		return 0, time.Time{}, false
	}
	var sev ltype.LogSeverity
	switch line[0] {
	case 'I':
		sev = ltype.LogSeverity_INFO
	case 'W':
		sev = ltype.LogSeverity_WARNING
	case 'E':
		sev = ltype.LogSeverity_ERROR
	case 'F':
		sev = ltype.LogSeverity_CRITICAL
	default:
		return 0, time.Time{}, false
	}
	num := func(s string) (int, bool) {
		n := 0
		for i := 0; i < len(s); i++ {
			if s[i] < '0' || s[i] > '9' {
				return 0, false
			}
			n = n*10 + int(s[i]-'0')
		}
		return n, true
	}
	mo, ok1 := num(line[1:3])
	d, ok2 := num(line[3:5])
	h, ok3 := num(line[6:8])
	mi, ok4 := num(line[9:11])
	sec, ok5 := num(line[12:14])
	us, ok6 := num(line[15:21])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60 {
		return 0, time.Time{}, false
	}
	best := time.Time{}
	for _, y := range []int{near.Year() - 1, near.Year(), near.Year() + 1} {
		t := time.Date(y, time.Month(mo), d, h, mi, sec, us*1000, time.UTC)
		if best.IsZero() || t.Sub(near).Abs() < best.Sub(near).Abs() {
			best = t
		}
	}
	return sev, best, true
}

func httpRequest(f map[string]*structpb.Value) *ltype.HttpRequest {
	num := func(k string) int64 { n, _ := strconv.ParseInt(scalarString(f[k]), 10, 64); return n }
	h := &ltype.HttpRequest{
		RequestMethod: scalarString(f["requestMethod"]), RequestUrl: scalarString(f["requestUrl"]),
		RequestSize: num("requestSize"), Status: int32(num("status")), ResponseSize: num("responseSize"),
		UserAgent: scalarString(f["userAgent"]), RemoteIp: scalarString(f["remoteIp"]),
		ServerIp: scalarString(f["serverIp"]), Referer: scalarString(f["referer"]),
		CacheLookup: f["cacheLookup"].GetBoolValue(), CacheHit: f["cacheHit"].GetBoolValue(),
		CacheValidatedWithOriginServer: f["cacheValidatedWithOriginServer"].GetBoolValue(),
		CacheFillBytes:                 num("cacheFillBytes"), Protocol: scalarString(f["protocol"]),
	}
	if l := scalarString(f["latency"]); strings.HasSuffix(l, "s") {
		if d, err := time.ParseDuration(l); err == nil {
			h.Latency = durationpb.New(d)
		}
	}
	return h
}

// scalarString renders a JSON scalar as text: numbers without a fraction as integers.
func scalarString(v *structpb.Value) string {
	switch k := v.GetKind().(type) {
	case *structpb.Value_StringValue:
		return k.StringValue
	case *structpb.Value_NumberValue:
		return strconv.FormatFloat(k.NumberValue, 'f', -1, 64)
	case *structpb.Value_BoolValue:
		return strconv.FormatBool(k.BoolValue)
	}
	return ""
}

func severityOf(v record.Value) (ltype.LogSeverity, bool) {
	if v == nil {
		return 0, false
	}
	if b, ok := v.Bytes(); ok {
		return severityText(string(bytes.TrimSpace(b)))
	}
	var buf [24]byte
	n := accessor.AppendScalar(buf[:0], v)
	return severityText(string(n))
}

func severityOfJSON(v *structpb.Value) (ltype.LogSeverity, bool) {
	return severityText(strings.TrimSpace(scalarString(v)))
}

// severityText reads a name in any case, or a number as Cloud Logging's, rounded down to the
// hundred (GKE's agent reads numbers so: 450 is WARNING, 7 is DEFAULT, above 800 EMERGENCY).
func severityText(s string) (ltype.LogSeverity, bool) {
	if s == "" {
		return 0, false
	}
	if n, err := strconv.Atoi(s); err == nil {
		if n < 0 {
			return 0, false
		}
		return ltype.LogSeverity(min(n/100*100, 800)), true
	}
	sev, ok := core.SeverityNamed([]byte(s))
	if !ok {
		return 0, false
	}
	return ltype.LogSeverity((8 - sev) * 100), true
}

// truncateUTF8 cuts s to at most max bytes on a UTF-8 boundary, marked.
func truncateUTF8(s string, max int) string {
	if len(s) <= max {
		return s
	}
	return s[:core.RuneCut(s, max-len(core.TruncMark))] + core.TruncMark
}
