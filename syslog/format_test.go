package syslog

import (
	"bytes"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/leodido/go-syslog/v4/rfc5424"
	"github.com/tinylib/msgp/msgp"

	"github.com/trailstack/trailstack/core"
	"github.com/trailstack/trailstack/record"
	"github.com/trailstack/trailstack/testkit/fixture"
)

func newFormatter(t testing.TB, keys core.MapGetter) *formatter {
	t.Helper()
	if keys["address"] == "" {
		keys["address"] = "127.0.0.1:6514"
	}
	p := core.NewParser(keys)
	c := Parse(p)
	if p.Err() != nil {
		t.Fatal(p.Err())
	}
	return c.f
}

type fixtureRecord struct {
	tag string
	rec record.Record
}

func loadFixtures(t testing.TB, sets ...string) []fixtureRecord {
	t.Helper()
	var out []fixtureRecord
	for _, set := range sets {
		for _, b := range fixture.Batches(t, set) {
			for _, r := range b.Records {
				out = append(out, fixtureRecord{b.Tag, r})
			}
		}
	}
	return out
}

// splitFrames undoes the framing.
func splitFrames(t *testing.T, b []byte, fr framing) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		switch fr {
		case framingLF:
			i := bytes.IndexByte(b, '\n')
			out, b = append(out, b[:i]), b[i+1:]
		case framingOctet:
			sp := bytes.IndexByte(b, ' ')
			n, err := strconv.Atoi(string(b[:sp]))
			if err != nil {
				t.Fatalf("bad octet count %q", b[:sp])
			}
			out, b = append(out, b[sp+1:sp+1+n]), b[sp+1+n:]
		}
	}
	return out
}

// Every fixture record, in both framings, parses with go-syslog's strict RFC 5424 parser
// and gives back the fields that went in.
func TestRoundTripEveryFixtureRecord(t *testing.T) {
	recs := loadFixtures(t, "kube-merged", "kube-raw", "plain")
	parser := rfc5424.NewParser()
	for _, fr := range []framing{framingLF, framingOctet} {
		f := newFormatter(t, core.MapGetter{
			"framing":   fr.String(),
			"sd_params": "ns=$kubernetes['namespace_name'] pod=$kubernetes['pod_name'] label=$kubernetes['labels']",
		})
		s := f.newScratch()
		var stream []byte
		for i := range recs {
			stream = f.appendFrame(stream, &recs[i].rec, recs[i].tag, s)
		}
		frames := splitFrames(t, stream, fr)
		if len(frames) != len(recs) {
			t.Fatalf("%v: %d frames for %d records", fr, len(frames), len(recs))
		}
		for i, frame := range frames {
			r := &recs[i].rec
			m, err := parser.Parse(frame)
			if err != nil {
				t.Fatalf("%v record %d: %v\n%q", fr, i, err, frame)
			}
			msg := m.(*rfc5424.SyslogMessage)
			check := func(what string, got *string, want string) {
				t.Helper()
				if want == "" {
					want = "-"
				}
				g := "-"
				if got != nil {
					g = *got
				}
				if g != want {
					t.Fatalf("%v record %d: %s = %q, want %q", fr, i, what, g, want)
				}
			}
			check("hostname", msg.Hostname, fixture.Text(r, "kubernetes", "host"))
			// Namespace, container and pod are the tag's (the kubelet's file name), with or
			// without the filter's metadata, which agrees with it where present.
			file := containerFile.FindStringSubmatch(recs[i].tag)
			if file == nil {
				t.Fatalf("fixture tag %q names no container", recs[i].tag)
			}
			if ns := fixture.Text(r, "kubernetes", "namespace_name"); ns != "" && (ns != file[2] || fixture.Text(r, "kubernetes", "pod_name") != file[1]) {
				t.Fatalf("the fixture's metadata disagrees with its tag")
			}
			check("appname", msg.Appname, file[2]+"/"+file[3])
			check("procid", msg.ProcID, file[1])
			check("msgid", msg.MsgID, fixture.Text(r, "stream"))
			if !msg.Timestamp.Equal(r.Time().Truncate(time.Microsecond)) {
				t.Fatalf("record %d: timestamp %v, want %v", i, msg.Timestamp, r.Time())
			}
			if *msg.Facility != 1 {
				t.Fatalf("record %d: facility %d", i, *msg.Facility)
			}
			wantSev := 6
			if fixture.Text(r, "stream") == "stderr" {
				wantSev = 3
			}
			// The names the fixtures' applications write, spelled out here rather than
			// read through the table under test.
			for _, k := range []string{"severity", "level"} {
				if name := fixture.Text(r, k); name != "" {
					n, ok := map[string]int{"CRITICAL": 2, "ERROR": 3, "error": 3, "WARNING": 4, "warn": 4, "INFO": 6, "info": 6, "debug": 7}[name]
					if !ok {
						t.Fatalf("record %d: a %s %q the test does not know", i, k, name)
					}
					wantSev = n
					break
				}
			}
			if int(*msg.Severity) != wantSev {
				t.Fatalf("record %d: severity %d, want %d", i, *msg.Severity, wantSev)
			}
			// ns and pod are the tag's; the pod's labels come only with the filter's metadata.
			if msg.StructuredData == nil {
				t.Fatalf("record %d: no structured data", i)
			}
			sd := (*msg.StructuredData)[defaultSDID]
			if sd["ns"] != file[2] || sd["pod"] != file[1] || sd["label.app"] != fixture.Text(r, "kubernetes", "labels", "app") {
				t.Fatalf("record %d: structured data %v", i, sd)
			}
			want, _, err := fixture.SyslogMSG(r, fr == framingLF)
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			if msg.Message != nil {
				got = *msg.Message
			}
			if len(frame) > f.maxSize {
				t.Fatalf("record %d: %d bytes, over max_size", i, len(frame))
			}
			switch {
			case strings.HasSuffix(got, core.TruncMark):
				if !strings.HasPrefix(want, strings.TrimSuffix(got, core.TruncMark)) || len(frame) < f.maxSize-utf8.UTFMax {
					t.Fatalf("record %d: badly truncated", i)
				}
			case got != want:
				t.Fatalf("record %d: MSG %q, want %q", i, got, want)
			}
			if !utf8.ValidString(got) {
				t.Fatalf("record %d: invalid UTF-8 passed on", i)
			}
		}
	}
}

// containerFile is the kubelet's /var/log/containers/<pod>_<namespace>_<container>-<id>.log.
var containerFile = regexp.MustCompile(`containers\.([^_]+)_([^_]+)_(.+)-[0-9a-f]{64}\.log$`)

func frame(t *testing.T, f *formatter, tag string, body map[string]any) string {
	t.Helper()
	b, err := msgp.AppendIntf(nil, body)
	if err != nil {
		t.Fatal(err)
	}
	r := record.Record{Sec: 1795694400, Nsec: 123456789, Body: b}
	return string(f.appendFrame(nil, &r, tag, f.newScratch()))
}

func TestTemplatesAndFallbacks(t *testing.T) {
	t.Setenv("NODE_NAME", "node-7")
	f := newFormatter(t, core.MapGetter{
		"hostname": "$kubernetes['host']||${NODE_NAME}",
		"appname":  "${tag[1]}-$TAG[2]",
		"procid":   `$kubernetes["pod_name"]||$missing||pid-$TAG`,
		"msgid":    "fixed id with spaces",
	})
	got := frame(t, f, "kube.var.log", map[string]any{"log": "x", "stream": "stdout"})
	want := "<14>1 2026-11-26T12:00:00.123456Z node-7 var-log pid-kube.var.log fixed_id_with_spaces - x\n"
	if got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	// Under a tag that names no container, a kubernetes map proves nothing and is ignored.
	got = frame(t, f, "a", map[string]any{"log": "y", "kubernetes": map[string]any{"host": "n1", "pod_name": "p"}})
	if !strings.HasPrefix(got, "<14>1 2026-11-26T12:00:00.123456Z node-7 - pid-a fixed_id_with_spaces - y") {
		t.Errorf("got %q", got)
	}
	// Under the container's own tag, the filter's map counts.
	tag := "kube.var.log.containers.p_ns_c-" + strings.Repeat("ab", 32) + ".log"
	got = frame(t, f, tag, map[string]any{"log": "y", "kubernetes": map[string]any{"host": "n1", "pod_name": "p", "namespace_name": "ns", "container_name": "c"}})
	if !strings.HasPrefix(got, "<14>1 2026-11-26T12:00:00.123456Z n1 var-log p fixed_id_with_spaces - y") {
		t.Errorf("got %q", got)
	}
	// An unset environment variable makes its alternative fail.
	t.Setenv("NODE_NAME", "") // empty counts as unset
	f = newFormatter(t, core.MapGetter{"hostname": "${NODE_NAME}||fallback"})
	if got := frame(t, f, "a", map[string]any{"log": "z"}); !strings.Contains(got, " fallback ") {
		t.Errorf("got %q", got)
	}
}

func TestHeaderLimits(t *testing.T) {
	long := strings.Repeat("h", 300)
	f := newFormatter(t, core.MapGetter{"hostname": "$h", "appname": "$h", "procid": "$h", "msgid": "$h"})
	got := frame(t, f, "a", map[string]any{"h": long + "é", "log": "m"})
	fields := strings.Fields(got)
	for i, max := range map[int]int{2: 255, 3: 48, 4: 128, 5: 32} {
		if len(fields[i]) != max {
			t.Errorf("field %d: %d bytes, want %d", i, len(fields[i]), max)
		}
	}
	got = frame(t, f, "a", map[string]any{"h": "é t", "log": "m"})
	if !strings.Contains(got, " ___t ___t ___t ___t ") {
		t.Errorf("non-printable bytes not replaced: %q", got)
	}
}

func TestStructuredDataEscaping(t *testing.T) {
	f := newFormatter(t, core.MapGetter{"sd_params": "v=$v num=$n missing=$nope m=$m", "sd_id": "my@1"})
	got := frame(t, f, "a", map[string]any{
		"v": `a"b\c]d` + "\xff", "n": 42, "log": "x",
		"m": map[string]any{"k=1 x": "v", strings.Repeat("k", 40): "w"},
	})
	for _, want := range []string{`[my@1 v="a\"b\\c\]d` + "\uFFFD" + `" num="42" m.`, ` m.k_1_x="v"`, ` m.` + strings.Repeat("k", 30) + `="w"`, `"] x`} {
		if !strings.Contains(got, want) {
			t.Errorf("got %q, want it to contain %q", got, want)
		}
	}
	m, err := rfc5424.NewParser().Parse([]byte(strings.TrimSuffix(got, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	if sd := (*m.(*rfc5424.SyslogMessage).StructuredData)["my@1"]; sd["v"] != `a"b\c]d`+"\uFFFD" {
		t.Errorf("parsed back %q", sd["v"])
	}
	p := core.NewParser(core.MapGetter{"address": "h:1", "sd_params": "bad name=$x"})
	Parse(p)
	if p.Err() == nil || !strings.Contains(p.Err().Error(), `"sd_params"`) {
		t.Errorf("bad sd_params accepted: %v", p.Err())
	}
}

func TestSeverity(t *testing.T) {
	f := newFormatter(t, core.MapGetter{"severity_stderr": "warning", "facility": "local0"})
	for _, c := range []struct {
		body map[string]any
		pri  int
	}{
		{map[string]any{"log": "x", "stream": "stderr"}, 16*8 + 4},
		{map[string]any{"log": "x", "stream": "stdout"}, 16*8 + 6},
		{map[string]any{"log": "x"}, 16*8 + 6},
		{map[string]any{"log": "x", "severity": "FATAL", "stream": "stdout"}, 16*8 + 2},
		{map[string]any{"log": "x", "level": "warn"}, 16*8 + 4},
		{map[string]any{"log": "x", "level": 7}, 16*8 + 7},
		{map[string]any{"log": "x", "level": "3"}, 16*8 + 3},
		{map[string]any{"log": "x", "level": "Informational"}, 16*8 + 6},
		{map[string]any{"log": "x", "level": "bogus", "stream": "stderr"}, 16*8 + 4},
		{map[string]any{"log": "x", "severity": 9, "level": "debug"}, 16*8 + 7},
	} {
		if got := frame(t, f, "a", c.body); !strings.HasPrefix(got, fmt.Sprintf("<%d>1 ", c.pri)) {
			t.Errorf("%v: %q, want PRI %d", c.body, got, c.pri)
		}
	}
	for key, val := range map[string]string{"facility": "local9", "severity_stdout": "loud", "framing": "crlf", "max_size": "1"} {
		keys := core.MapGetter{"address": "h:514", key: val}
		p := core.NewParser(keys)
		Parse(p)
		if p.Err() == nil || !strings.Contains(p.Err().Error(), fmt.Sprintf("%q", key)) {
			t.Errorf("%s=%s: error %v", key, val, p.Err())
		}
	}
}

func TestMessageHandling(t *testing.T) {
	lf := newFormatter(t, core.MapGetter{})
	oc := newFormatter(t, core.MapGetter{"framing": "octet"})
	trace := "Exception\n\tat a.b(C.java:1)\r\n\tat d.e(F.java:2)\n"
	if got := frame(t, lf, "a", map[string]any{"log": trace}); !strings.HasSuffix(got, " - Exception \tat a.b(C.java:1)  \tat d.e(F.java:2)\n") {
		t.Errorf("lf: %q", got)
	}
	got := frame(t, oc, "a", map[string]any{"log": trace})
	if !strings.HasSuffix(got, " - Exception\n\tat a.b(C.java:1)\r\n\tat d.e(F.java:2)") {
		t.Errorf("octet: %q", got)
	}
	if n, _ := strconv.Atoi(got[:strings.IndexByte(got, ' ')]); n != len(got)-strings.IndexByte(got, ' ')-1 {
		t.Errorf("octet count %d for %d bytes", n, len(got))
	}
	// Empty log line: no MSG at all.
	if got := frame(t, lf, "a", map[string]any{"log": "\n"}); !strings.HasSuffix(got, " - a - - -\n") {
		t.Errorf("empty: %q", got)
	}
	// Merged JSON: the body without kubernetes.
	got = frame(t, lf, "a", map[string]any{"msg": "hi", "kubernetes": map[string]any{"pod_name": "p"}})
	if !strings.HasSuffix(got, ` {"msg":"hi"}`+"\n") {
		t.Errorf("json: %q", got)
	}
}

func TestTruncation(t *testing.T) {
	f := newFormatter(t, core.MapGetter{"max_size": "1024"})
	for pad := 0; pad < 4; pad++ {
		log := strings.Repeat("a", pad) + strings.Repeat("日本語", 400)
		got := frame(t, f, "a", map[string]any{"log": log})
		msg := strings.TrimSuffix(got, "\n")
		if len(msg) > 1024 || len(msg) < 1024-3 || !strings.HasSuffix(msg, core.TruncMark) || !utf8.ValidString(msg) {
			t.Fatalf("pad %d: %d bytes, valid %v: %q", pad, len(msg), utf8.ValidString(msg), msg[len(msg)-30:])
		}
		if _, err := rfc5424.NewParser().Parse([]byte(msg)); err != nil {
			t.Fatal(err)
		}
	}
	if got := frame(t, f, "a", map[string]any{"log": strings.Repeat("b", 100)}); strings.Contains(got, core.TruncMark) {
		t.Error("short message marked truncated")
	}
}

func TestDefaultsRenderedForPapertrail(t *testing.T) {
	recs := loadFixtures(t, "kube-merged")
	f := newFormatter(t, core.MapGetter{})
	got := string(f.appendFrame(nil, &recs[1].rec, recs[1].tag, f.newScratch()))
	want := `<11>1 2026-11-26T12:00:00.005480Z gke-blog-cluster-default-pool-1a2b3c4d-xyz1 blog/api api-5d9b8c7f6-abcde stderr - Exception in thread "main" java.lang.IllegalStateException: order 0 failed` + "\n"
	if got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

// A value nested deeper than msgpack's recursion limit cannot be rendered as JSON: the MSG
// ends there and the flush counts it, for the sink to log, instead of sending "{}" silently.
func TestTooDeepIsCounted(t *testing.T) {
	f := newFormatter(t, core.MapGetter{})
	b := msgp.AppendMapHeader(nil, 2)
	b = msgp.AppendString(b, "user")
	b = msgp.AppendString(b, "ann")
	b = msgp.AppendString(b, "deep")
	for i := 0; i < 100001; i++ {
		b = append(b, 0x91) // an array of one element
	}
	b = append(b, 0x01)
	s := f.newScratch()
	r := record.Record{Sec: 1795694400, Body: b}
	out := string(f.appendFrame(nil, &r, "t", s))
	if s.jsonErrs != 1 || s.jsonErr == nil || !strings.Contains(out, `{"user":"ann"`) {
		t.Fatalf("%d errors (%v), frame %.120q", s.jsonErrs, s.jsonErr, out)
	}
}

// A parameter name that fills the 32 bytes RFC 5424 allows, expanded over a map's keys,
// still gives names within the limit, and the frame still parses.
func TestSDNameFromAMapKeyStaysWithin32Bytes(t *testing.T) {
	name := strings.Repeat("n", 32)
	f := newFormatter(t, core.MapGetter{"sd_params": name + "=$m"})
	got := frame(t, f, "a", map[string]any{"log": "x", "m": map[string]any{strings.Repeat("k", 40): "w"}})
	m, err := rfc5424.NewParser().Parse([]byte(strings.TrimSuffix(got, "\n")))
	if err != nil {
		t.Fatalf("%v: %q", err, got)
	}
	for id, params := range *m.(*rfc5424.SyslogMessage).StructuredData {
		for k := range params {
			if len(k) > 32 || len(id) > 32 {
				t.Errorf("name %q (%d bytes)", k, len(k))
			}
		}
	}
}

// Papertrail sees what the application logged as JSON: not the time, stream and _p that
// Fluent Bit wrote first, nor the filter's kubernetes map; an application's own stream and
// time stay, once, while MSGID is still the engine's stream.
func TestMergedJSONIsTheApplications(t *testing.T) {
	f := newFormatter(t, core.MapGetter{})
	b := msgp.AppendMapHeader(nil, 7)
	for _, kv := range [][2]string{{"time", "2026-11-26T12:00:00.1Z"}, {"stream", "stderr"}, {"_p", "F"}, {"level", "warn"}, {"stream", "billing"}, {"time", "12:00"}} {
		b = msgp.AppendString(b, kv[0])
		b = msgp.AppendString(b, kv[1])
	}
	b = msgp.AppendString(b, "kubernetes")
	b = msgp.AppendMapHeader(b, 1)
	b = msgp.AppendString(b, "pod_name")
	b = msgp.AppendString(b, "p")
	r := record.Record{Sec: 1795694400, Body: b}
	got := string(f.appendFrame(nil, &r, "t", f.newScratch()))
	if want := ` stderr - {"level":"warn","stream":"billing","time":"12:00"}` + "\n"; !strings.HasSuffix(got, want) || !strings.HasPrefix(got, "<12>") {
		t.Fatalf("got %q, want PRI 12 and the suffix %q", got, want)
	}
	if want, _, _ := fixture.SyslogMSG(&r, true); !strings.HasSuffix(got, " "+want+"\n") {
		t.Fatalf("fixture.SyslogMSG gives %q", want)
	}
}

// A chunk's records share their header, which is kept from one record to the next: the
// messages are the same byte for byte as with a fresh scratch for every record, in fixture
// order and with the containers interleaved record by record.
func TestKeptHeaderIsTheRenderedOne(t *testing.T) {
	recs := loadFixtures(t, "kube-merged", "kube-raw", "plain")
	var mixed []fixtureRecord
	for i, j := 0, len(recs)-1; i <= j; i, j = i+1, j-1 {
		mixed = append(mixed, recs[i])
		if i != j {
			mixed = append(mixed, recs[j])
		}
	}
	f := newFormatter(t, core.MapGetter{"procid": "$kubernetes['pod_name']||$TAG[4]", "hostname": "$kubernetes['host']||fallback"})
	for name, order := range map[string][]fixtureRecord{"in order": recs, "interleaved": mixed} {
		kept := f.newScratch()
		for i := range order {
			got := f.appendFrame(nil, &order[i].rec, order[i].tag, kept)
			want := f.appendFrame(nil, &order[i].rec, order[i].tag, f.newScratch())
			if !bytes.Equal(got, want) {
				t.Fatalf("%s, record %d:\n%q\nwant\n%q", name, i, got, want)
			}
		}
	}
	// One container whose kubernetes map changes (its node's name): a header kept for one
	// map is not the other's, though the values outside the map (the stream) agree.
	c := fixture.ShapeContainers("kube")[0]
	var moved []record.Record
	for i, host := range []string{"node-x", "node-x", "node-y", "node-x", "node-y"} {
		body, _ := msgp.AppendIntf(nil, map[string]any{"log": "line", "stream": "stdout", "kubernetes": map[string]any{
			"pod_name": c.Pod, "namespace_name": c.NS, "container_name": c.Name, "host": host,
			"labels": map[string]any{"app": "shop", "pod-template-hash": c.Hash},
		}})
		moved = append(moved, record.Record{Sec: int64(1e9 + i), Body: body})
	}
	batches := []*core.Batch{fixture.Chunk("kube.var.log.containers."+c.File(), moved)}
	// The benchmarks' shapes: both streams of a container, and six containers of three pods
	// under one tag (mixed), more than the headers kept.
	for _, shape := range fixture.Shapes {
		batch, _ := fixture.ShapeBatch(shape, 256<<10)
		batches = append(batches, batch)
	}
	for _, batch := range batches {
		kept := f.newScratch()
		for i := range batch.Records {
			got := f.appendFrame(nil, &batch.Records[i], batch.Tag, kept)
			want := f.appendFrame(nil, &batch.Records[i], batch.Tag, f.newScratch())
			if !bytes.Equal(got, want) {
				t.Fatalf("%s, record %d:\n%q\nwant\n%q", batch.Tag, i, got, want)
			}
		}
	}
}

// plainASCII's words-at-a-time test agrees with a byte-by-byte reading, wherever in a
// line the byte that makes it not plain lies.
func TestPlainASCII(t *testing.T) {
	plain := func(b []byte) bool {
		for _, c := range b {
			if c < 0x20 || c >= 0x80 {
				return false
			}
		}
		return true
	}
	line := []byte(`10.4.3.7 - - [27/Nov/2026:06:00:00 +0000] "GET /api HTTP/1.1" 200 ~`)
	for n := 0; n <= len(line); n++ {
		for at := 0; at < n; at++ {
			for _, c := range []byte{0, '\t', '\n', '\r', 0x1f, 0x20, 0x7e, 0x7f, 0x80, 0xc3, 0xff} {
				b := append([]byte(nil), line[:n]...)
				b[at] = c
				if got, want := plainASCII(b), plain(b); got != want {
					t.Fatalf("%q: %v, want %v", b, got, want)
				}
			}
		}
	}
}
