package syslog

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/leodido/go-syslog/v4/rfc5424"
	"github.com/tinylib/msgp/msgp"

	"github.com/trailstack/trailstack/accessor"
	"github.com/trailstack/trailstack/core"
	"github.com/trailstack/trailstack/record"
	"github.com/trailstack/trailstack/testkit/fixture"
)

// FuzzFrame: whatever a record holds, the frame parses with go-syslog's strict RFC 5424
// parser and MSG carries the log line as the README says (trimmed, repaired, one line), or,
// for a body the kubernetes filter merged, the application's JSON.
func FuzzFrame(f *testing.F) {
	f.Add("hello", "node-1", "ns", "pod", "c", "stdout", "INFO", "tag.a.b", uint8(0))
	f.Add("multi\nline\r\n", "", "", "", "", "stderr", "", "", uint8(1))
	f.Add("bad \xff utf8 \x00", "ho st", "n\"s]", "p=d", "c\\", "x", "7", "t", uint8(0))
	f.Add(strings.Repeat("日本", 600), "h", "n", "p", "c", "s", "warn", "x", uint8(1))
	f.Add("merged \"json\" \xff", "app-stream", "ns", "pod", "c", "stdout", "info", "2026-11-26T12:00:00Z", uint8(2))
	f.Add(strings.Repeat("x\n", 700), "", "", "", "", "stderr", "", "", uint8(3))
	lf := newFormatter(f, core.MapGetter{"max_size": "1024", "sd_params": "ns=$kubernetes['namespace_name'] c=$kubernetes['container_name']"})
	oc := newFormatter(f, core.MapGetter{"max_size": "1024", "framing": "octet", "sd_params": "ns=$kubernetes['namespace_name']"})
	p := rfc5424.NewParser()
	f.Fuzz(func(t *testing.T, log, host, ns, pod, container, stream, sev, tag string, which uint8) {
		var b []byte
		if which&2 == 0 {
			b = msgp.AppendMapHeader(b, 4)
			b = msgp.AppendString(b, "log")
			b = msgp.AppendString(b, log)
			b = msgp.AppendString(b, "stream")
			b = msgp.AppendString(b, stream)
		} else {
			// As the kubernetes filter merges an application's JSON: Fluent Bit's keys
			// first, then the application's (a stream of its own among them).
			b = msgp.AppendMapHeader(b, 8)
			for _, kv := range [][2]string{{"time", tag}, {"stream", stream}, {"_p", "F"}, {"msg", log}, {"stream", host}} {
				b = msgp.AppendString(b, kv[0])
				b = msgp.AppendString(b, kv[1])
			}
			b = msgp.AppendString(b, "n")
			b = msgp.AppendInt(b, int(which))
		}
		b = msgp.AppendString(b, "severity")
		b = msgp.AppendString(b, sev)
		b = msgp.AppendString(b, "kubernetes")
		b = msgp.AppendMapHeader(b, 4)
		for _, kv := range [][2]string{{"host", host}, {"namespace_name", ns}, {"pod_name", pod}, {"container_name", container}} {
			b = msgp.AppendString(b, kv[0])
			b = msgp.AppendString(b, kv[1])
		}
		r := record.Record{Sec: 1795694400, Nsec: 5, Body: b}
		fm := lf
		if which%2 == 1 {
			fm = oc
		}
		frame := fm.appendFrame(nil, &r, tag, fm.newScratch())
		if fm == lf {
			if strings.Count(string(frame), "\n") != 1 || frame[len(frame)-1] != '\n' {
				t.Fatalf("line framing broken: %q", frame)
			}
			frame = frame[:len(frame)-1]
		} else {
			frame = frame[strings.IndexByte(string(frame), ' ')+1:]
		}
		if len(frame) > 1024 {
			t.Fatalf("%d bytes over max_size", len(frame))
		}
		m, err := p.Parse(frame)
		if err != nil {
			t.Fatalf("%v: %q", err, frame)
		}
		msg := m.(*rfc5424.SyslogMessage)
		want, _, err := fixture.SyslogMSG(&r, fm == lf)
		if err != nil {
			t.Fatal(err)
		}
		got := ""
		if msg.Message != nil {
			got = *msg.Message
		}
		if got != want && !(strings.HasSuffix(got, core.TruncMark) && strings.HasPrefix(want, strings.TrimSuffix(got, core.TruncMark))) {
			t.Fatalf("MSG %q, want %q", got, want)
		}
	})
}

// FuzzFrameFields round-trips whole frames through go-syslog's strict parser and checks
// every field against what the README promises: HOSTNAME, APP-NAME, PROCID and MSGID cut
// to RFC 5424's lengths with bytes outside printable ASCII as '_' (empty: "-"); namespace,
// pod and container from the tag when it names a container (and the kubernetes map only
// when it names the same); the time to the microsecond; facility user; the SD values.
func FuzzFrameFields(f *testing.F) {
	f.Add("hello", "node-1", "stdout", "INFO", "api-5d9b8c7f6-abcde", "blog", "api", uint32(1795694400), uint32(123456789))
	f.Add("x", "h o\xffst", "std\nerr", "", "a.b", "n", "c-1", uint32(0), uint32(999999999))
	f.Add("", "", "", "7", "p_q", "n", "c", uint32(1), uint32(1))
	fm := newFormatter(f, core.MapGetter{"hostname": "$kubernetes['host']", "sd_params": "ns=$kubernetes['namespace_name'] pod=$kubernetes['pod_name']"})
	p := rfc5424.NewParser()
	header := func(v string, max int) string {
		b := []byte(v[:min(len(v), max)])
		for i, c := range b {
			if c < 33 || c > 126 {
				b[i] = '_'
			}
		}
		if len(b) == 0 {
			return "-"
		}
		return string(b)
	}
	f.Fuzz(func(t *testing.T, log, host, stream, sev, pod, ns, container string, sec, nsec uint32) {
		nsec %= 1e9
		tag := "kube.var.log.containers." + pod + "_" + ns + "_" + container + "-" + strings.Repeat("0f", 32) + ".log"
		b := msgp.AppendMapHeader(nil, 4)
		for _, kv := range [][2]string{{"log", log}, {"stream", stream}, {"severity", sev}} {
			b = msgp.AppendString(msgp.AppendString(b, kv[0]), kv[1])
		}
		b = msgp.AppendMapHeader(msgp.AppendString(b, "kubernetes"), 4)
		for _, kv := range [][2]string{{"host", host}, {"namespace_name", ns}, {"pod_name", pod}, {"container_name", container}} {
			b = msgp.AppendString(msgp.AppendString(b, kv[0]), kv[1])
		}
		r := record.Record{Sec: int64(sec), Nsec: int64(nsec), Body: b}
		frame := fm.appendFrame(nil, &r, tag, fm.newScratch())
		m, err := p.Parse(frame[:len(frame)-1])
		if err != nil {
			t.Fatalf("%v: %q", err, frame)
		}
		msg := m.(*rfc5424.SyslogMessage)
		want := map[string]string{"hostname": "-", "app-name": "kube", "procid": "-", "msgid": header(stream, maxMsgID)}
		var sd map[string]string
		if id := accessor.ParseTag(tag); id.OK {
			want["hostname"] = header(host, maxHostname)
			want["app-name"] = header(ns+"/"+container, maxAppName)
			want["procid"] = header(pod, maxProcID)
			sd = map[string]string{"ns": ns, "pod": pod}
		}
		for name, got := range map[string]*string{"hostname": msg.Hostname, "app-name": msg.Appname, "procid": msg.ProcID, "msgid": msg.MsgID} {
			g := "-"
			if got != nil {
				g = *got
			}
			if g != want[name] {
				t.Fatalf("%s %q, want %q: %q", name, g, want[name], frame)
			}
		}
		if wantT := time.Unix(int64(sec), int64(nsec)).Truncate(time.Microsecond); msg.Timestamp == nil || !msg.Timestamp.Equal(wantT) {
			t.Fatalf("timestamp %v, want %v", msg.Timestamp, wantT)
		}
		if *msg.Facility != 1 || *msg.Severity > 7 {
			t.Fatalf("facility %d severity %d", *msg.Facility, *msg.Severity)
		}
		var gotSD map[string]string
		if msg.StructuredData != nil {
			gotSD = (*msg.StructuredData)[defaultSDID]
		}
		if fmt.Sprint(gotSD) != fmt.Sprint(sd) {
			t.Fatalf("structured data %v, want %v", gotSD, sd)
		}
	})
}
