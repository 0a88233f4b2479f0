package stackdriver

import (
	"strings"
	"time"
	"unicode/utf8"
	"unsafe"

	"cloud.google.com/go/logging/apiv2/loggingpb"
	ltype "google.golang.org/genproto/googleapis/logging/type"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/structpb"

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
	logSlots                   []int         // the values logName reads
	nodeFromKube               bool          // nodeName reads nothing but the kubernetes map (and the tag)
	retention                  time.Duration // the log bucket's: older entries are not stored
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

// entry maps the i-th record of the chunk. now is the time the flush began.
func (m *mapper) entry(r *record.Record, i int, tag string, s *scratch, now time.Time) *loggingpb.LogEntry {
	s.stamp = m.ex.Extract(s.tag.Of(tag), record.Value(r.Body), s.vals, &s.memo)
	v := s.vals
	e, stamp := s.newEntry()
	e.Resource = m.resource(v, tag, s)
	e.LogName = m.logNameOf(v, tag, s)
	p := m.payload(r, s)
	ts := r.Time()
	var glogTime time.Time
	e.Severity, glogTime = m.severity(v, p.json, p.text, ts, r.Trace)
	if !glogTime.IsZero() {
		ts = glogTime
	}
	switch {
	case p.json != nil:
		if t, ok := m.lift(e, p.json); ok {
			ts = t
		}
		e.Payload = &loggingpb.LogEntry_JsonPayload{JsonPayload: p.json}
	case p.raw != nil:
		// Written as the field's bytes, which protobuf sends as they are.
		e.ProtoReflect().SetUnknown(protoreflect.RawFields(p.raw))
	default:
		e.Payload = s.newText(p.text)
	}
	ts = s.sendable(e, ts, now)
	stamp.Seconds, stamp.Nanos = ts.Unix(), int32(ts.Nanosecond())
	e.Timestamp = stamp
	s.pod = nil
	if e.Resource.GetType() == "k8s_container" {
		s.pod = m.podOf(v, tag, s)
	}
	if e.InsertId == "" {
		e.InsertId = s.insertID(i)
	}
	return e
}

// payload is a record's payload in one of three forms: a JSON payload to lift fields out
// of, one encoded already, or text.
type payload struct {
	json *structpb.Struct
	raw  []byte // the json_payload field, encoded (converter.appendBody)
	text string
}

// payload reads a record's payload: a log line that is a JSON object becomes a JSON payload,
// any other line text; without a log key, the kubernetes filter merged the application's JSON
// into the body, which is the payload. What is too large, or past the flush's budget of
// values, goes as text (cutToFit cuts it if it is too long).
func (m *mapper) payload(r *record.Record, s *scratch) payload {
	s.conv.bound = 0
	if lv := s.vals[m.slot.log]; lv != nil {
		text := trimNewlines(chunkString(lv))
		if t := strings.TrimSpace(text); len(t) > 1 && t[0] == '{' && t[len(t)-1] == '}' {
			if n := jsonValues(t); len(t) <= entryBudget && n <= s.conv.budget {
				p := &structpb.Struct{}
				if p.UnmarshalJSON([]byte(t)) == nil {
					s.conv.budget -= n
					// Every value of the text is at most its own text (escapes only
					// cutToFit; a number's 8 bytes are in the overhead) and n counts them.
					s.conv.bound = len(t) + n*valueOverhead
					return payload{json: p}
				}
			} else {
				s.textual++
			}
		}
		return payload{text: text}
	}
	if body := record.Value(r.Body); len(body) <= entryBudget {
		// Encoded straight from msgpack, unless lift has fields to take out of it.
		if raw, ok := s.conv.appendBody(s.raw, body); ok {
			p := payload{raw: raw[len(s.raw):]}
			s.raw = raw
			return p
		}
		if p := s.conv.toStruct(body, true); p != nil {
			return payload{json: p}
		}
	}
	s.textual++
	return payload{text: bodyText(record.Value(r.Body), maxTextBytes)}
}

// severity decides an entry's severity as GKE's agent does: the record's severity or level
// field; else the JSON payload's, which is taken out of the payload (a severity field that
// is not understood, in the record or the payload, gives DEFAULT and stays); else a glog or
// klog line's header, whose time it also returns; else ERROR for a stack trace the core
// joined; else the stream's.
func (m *mapper) severity(v []record.Value, p *structpb.Struct, text string, ts time.Time, trace bool) (ltype.LogSeverity, time.Time) {
	sev, known := ltype.LogSeverity_DEFAULT, false
	for _, sv := range []record.Value{v[m.slot.severity], v[m.slot.level]} {
		if got, ok := severityOf(sv); ok {
			sev, known = got, true
			break
		}
	}
	notUnderstood := v[m.slot.severity] != nil && !known
	if p != nil {
		// The Ops Agent's and out_stackdriver's name first: a payload that has it means it.
		if got, ok := severityOfJSON(p.Fields[specialPrefix+"severity"]); ok {
			delete(p.Fields, specialPrefix+"severity")
			if !known {
				sev, known = got, true
			}
		}
		if got, ok := severityOfJSON(p.Fields["severity"]); ok {
			delete(p.Fields, "severity") // the one used, or one that says the same
			if !known {
				sev, known = got, true
			}
		} else if p.Fields["severity"] != nil && !known {
			notUnderstood = true
		}
		if !known && !notUnderstood {
			sev, known = severityOfJSON(p.Fields["level"])
		}
	}
	switch {
	case known:
		return sev, time.Time{}
	case notUnderstood:
		return ltype.LogSeverity_DEFAULT, time.Time{}
	}
	if gs, gt, ok := glogHeader(text, ts); ok {
		return gs, gt
	}
	if trace {
		return ltype.LogSeverity_ERROR, time.Time{}
	}
	stream, _ := v[m.slot.stream].Bytes()
	switch string(stream) { // compared in place: no copy
	case "stderr":
		return ltype.LogSeverity_ERROR, time.Time{}
	case "stdout":
		return ltype.LogSeverity_INFO, time.Time{}
	}
	return ltype.LogSeverity_DEFAULT, time.Time{}
}

// sendable is the time to send an entry stamped ts with. The API refuses entries more than
// a day ahead, and accepts but never stores those older than the log bucket keeps (the
// retention key): such a record is sent stamped with a neighbour's time (see
// scratch.anchor), and labelled with the time it claimed.
func (s *scratch) sendable(e *loggingpb.LogEntry, ts, now time.Time) time.Time {
	if s.keeps(ts) {
		s.anchor = ts
		return ts
	}
	addLabel(e, "trailstack/original_timestamp", ts.UTC().Format(time.RFC3339Nano))
	switch {
	case !s.anchor.IsZero():
		return s.anchor
	case !s.firstSane.IsZero():
		return s.firstSane
	}
	// No record of the chunk has a usable time: the hour, so that a retry within it is
	// still a copy the service drops.
	return now.Truncate(time.Hour)
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

func str(v record.Value) string {
	b, ok := v.Bytes()
	if !ok {
		return ""
	}
	return validString(b)
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

// truncateUTF8 cuts s to at most max bytes on a UTF-8 boundary, marked.
func truncateUTF8(s string, max int) string {
	if len(s) <= max {
		return s
	}
	return s[:core.RuneCut(s, max-len(core.TruncMark))] + core.TruncMark
}
