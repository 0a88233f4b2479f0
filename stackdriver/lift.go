package stackdriver

import (
	"bytes"
	"strconv"
	"strings"
	"time"

	"cloud.google.com/go/logging/apiv2/loggingpb"
	ltype "google.golang.org/genproto/googleapis/logging/type"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/trailstack/trailstack/accessor"
	"github.com/trailstack/trailstack/core"
	"github.com/trailstack/trailstack/record"
)

// lift moves Cloud Logging's special fields (but severity: see severity) out of a JSON
// payload into the entry, as GKE's agent does, and returns the time the payload gives, if any: timestamp{seconds,nanos},
// else timestampSeconds and timestampNanos, else time (RFC 3339); the field used is removed.
func (m *mapper) lift(e *loggingpb.LogEntry, p *structpb.Struct) (time.Time, bool) {
	f := p.Fields
	take := func(k string) *structpb.Value {
		v := f[k]
		delete(f, k)
		return v
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
		if core.IsHex(e.Trace, 32) {
			e.Trace = "projects/" + m.project + "/traces/" + e.Trace
		}
	}
	if v := take(specialPrefix + "spanId"); v != nil {
		e.SpanId = v.GetStringValue()
	}
	// trace_sampled as GKE's agent names it, traceSampled as the Ops Agent and Fluent Bit's
	// out_stackdriver do.
	for _, k := range []string{"trace_sampled", "traceSampled"} {
		if v := take(specialPrefix + k); v != nil {
			e.TraceSampled = v.GetBoolValue() || v.GetStringValue() == "true"
		}
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
	// httpRequest as GKE's agent and the Ops Agent name it, http_request under the prefix
	// as Fluent Bit's out_stackdriver does. Not lifted, by the identity rule: the log name,
	// project and resource fields a pod could write (logName, projectId,
	// local_resource_id): they stay in its payload.
	for _, k := range []string{"httpRequest", specialPrefix + "http_request", specialPrefix + "httpRequest"} {
		if v := take(k); v != nil {
			e.HttpRequest = httpRequest(v.GetStructValue().GetFields())
		}
	}
	return ts, tsOK
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
