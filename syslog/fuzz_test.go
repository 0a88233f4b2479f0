package syslog

import (
	"strings"
	"testing"

	"github.com/leodido/go-syslog/v4/rfc5424"
	"github.com/tinylib/msgp/msgp"

	"github.com/trailstack/trailstack/core"
	"github.com/trailstack/trailstack/record"
)

// FuzzFrame: whatever a record holds, the frame parses with go-syslog's strict RFC 5424
// parser and MSG carries the log line as the README says (trimmed, repaired, one line).
func FuzzFrame(f *testing.F) {
	f.Add("hello", "node-1", "ns", "pod", "c", "stdout", "INFO", "tag.a.b", uint8(0))
	f.Add("multi\nline\r\n", "", "", "", "", "stderr", "", "", uint8(1))
	f.Add("bad \xff utf8 \x00", "ho st", "n\"s]", "p=d", "c\\", "x", "7", "t", uint8(0))
	f.Add(strings.Repeat("日本", 600), "h", "n", "p", "c", "s", "warn", "x", uint8(1))
	lf := newFormatter(f, core.MapGetter{"max_size": "1024", "sd_params": "ns=$kubernetes['namespace_name'] c=$kubernetes['container_name']"})
	oc := newFormatter(f, core.MapGetter{"max_size": "1024", "framing": "octet", "sd_params": "ns=$kubernetes['namespace_name']"})
	p := rfc5424.NewParser()
	f.Fuzz(func(t *testing.T, log, host, ns, pod, container, stream, sev, tag string, which uint8) {
		var b []byte
		b = msgp.AppendMapHeader(b, 4)
		b = msgp.AppendString(b, "log")
		b = msgp.AppendString(b, log)
		b = msgp.AppendString(b, "stream")
		b = msgp.AppendString(b, stream)
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
		want := strings.Map(func(r rune) rune { return r }, strings.TrimRight(log, "\r\n"))
		if fm == lf {
			want = strings.NewReplacer("\n", " ", "\r", " ", "\x00", " ").Replace(want)
		}
		got := ""
		if msg.Message != nil {
			got = *msg.Message
		}
		if got != want && !(strings.HasSuffix(got, truncMark) && strings.HasPrefix(want, strings.TrimSuffix(got, truncMark))) {
			t.Fatalf("MSG %q, want %q", got, want)
		}
	})
}
