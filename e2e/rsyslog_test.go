package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/trailstack/trailstack/record"
	"github.com/trailstack/trailstack/testkit/delayline"
	"github.com/trailstack/trailstack/testkit/fixture"
	"github.com/trailstack/trailstack/testkit/testpki"
)

// rsyslog is a real TLS syslog server from Debian's packages, writing every field it parsed
// from each message as JSON-escaped text, tab-separated, one message per line.
type rsyslog struct {
	ip   string
	port int
	out  string
	cmd  *exec.Cmd
	log  *bytes.Buffer
}

func startRsyslog(t *testing.T, pki *testpki.PKI) *rsyslog { return startRsyslogAt(t, pki, nil) }

// startRsyslogAt starts rsyslog at the far end of line (nil: on loopback).
func startRsyslogAt(t *testing.T, pki *testpki.PKI, line *delayline.Line) *rsyslog {
	t.Helper()
	bin, err := exec.LookPath("rsyslogd")
	if err != nil {
		bin = "/usr/sbin/rsyslogd"
		if _, serr := os.Stat(bin); serr != nil {
			if os.Getenv("CI") != "" {
				t.Fatal("rsyslogd not installed: .ci/run installs rsyslog and rsyslog-gnutls")
			}
			t.Skip("skipped: rsyslogd not installed (apt-get install rsyslog rsyslog-gnutls)")
		}
	}
	dir := t.TempDir()
	ip := "127.0.0.1"
	ln, err := net.Listen("tcp", ip+":0")
	if line != nil {
		ip = line.FarIP
		ln, err = line.Listen(nil, "tcp", ip+":0")
	}
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	r := &rsyslog{ip: ip, port: port, out: filepath.Join(dir, "received"), log: &bytes.Buffer{}}
	field := func(name string) string {
		return fmt.Sprintf(`constant(value="\"") property(name="%s" format="json") constant(value="\"")`, name)
	}
	conf := fmt.Sprintf(`
global(workDirectory="%[1]s"
       maxMessageSize="256k"
       parser.escapeControlCharactersOnReceive="off"
       defaultNetstreamDriver="gtls"
       defaultNetstreamDriverCAFile="%[2]s"
       defaultNetstreamDriverCertFile="%[3]s"
       defaultNetstreamDriverKeyFile="%[4]s")
module(load="imtcp" streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")
input(type="imtcp" address="%[13]s" port="%[5]d")
template(name="fields" type="list") {
  %[6]s constant(value="\t") %[7]s constant(value="\t") %[8]s constant(value="\t")
  %[9]s constant(value="\t") %[10]s constant(value="\t") %[11]s constant(value="\n")
}
action(type="omfile" file="%[12]s" template="fields")
`, dir, pki.CAFile, pki.CertFile, pki.KeyFile, port,
		field("hostname"), field("app-name"), field("procid"), field("msgid"), field("structured-data"), field("msg"), r.out, ip)
	confPath := filepath.Join(dir, "rsyslog.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	r.cmd = exec.Command(bin, "-n", "-f", confPath, "-i", filepath.Join(dir, "rsyslogd.pid"))
	if line != nil {
		r.cmd = line.Command(bin, "-n", "-f", confPath, "-i", filepath.Join(dir, "rsyslogd.pid"))
	}
	r.cmd.Stdout, r.cmd.Stderr = r.log, r.log
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.cmd.Process.Kill(); _ = r.cmd.Wait() })
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if c, err := net.Dial("tcp", r.addr()); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rsyslogd did not listen on %d", port)
		}
	}
	return r
}

func (r *rsyslog) addr() string { return net.JoinHostPort(r.ip, fmt.Sprint(r.port)) }

// lines waits for n lines from rsyslog, then stops it so that all are flushed.
func (r *rsyslog) lines(t *testing.T, n int) [][]string {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		b, _ := os.ReadFile(r.out)
		if bytes.Count(b, []byte("\n")) >= n || time.Now().After(deadline) {
			break
		}
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	_ = r.cmd.Wait()
	b, err := os.ReadFile(r.out)
	if err != nil {
		t.Fatalf("%v\nrsyslogd said:\n%s", err, r.log)
	}
	var out [][]string
	for _, l := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		var fields []string
		for _, f := range strings.Split(l, "\t") {
			var s string
			if err := json.Unmarshal([]byte(f), &s); err != nil {
				t.Fatalf("rsyslog line %q: %v", l, err)
			}
			fields = append(fields, s)
		}
		out = append(out, fields)
	}
	return out
}

// The fixture chunks go through the real .so to rsyslog over TLS, in both framings; every
// record arrives once, and what rsyslog parsed is what the record held.
func TestHostRsyslogReceivesEveryFixtureRecord(t *testing.T) {
	var files []string
	for _, set := range []string{"kube-merged", "kube-raw", "plain"} {
		files = append(files, fixtures(t, set)...)
	}
	type rec struct {
		tag string
		r   record.Record
	}
	var recs []rec
	for _, f := range files {
		b := fixture.Batch(t, f)
		for _, r := range b.Records {
			recs = append(recs, rec{b.Tag, r})
		}
	}
	pki := testpki.New(t, "localhost")
	for _, framing := range []string{"lf", "octet"} {
		t.Run(framing, func(t *testing.T) {
			rs := startRsyslog(t, pki)
			r := host(t, append([]string{"-q", soPath, "-i",
				"-o", "sink=syslog",
				"-o", fmt.Sprintf("address=127.0.0.1:%d", rs.port),
				"-o", "ca_file=" + pki.CAFile,
				"-o", "framing=" + framing,
				"-o", "sd_params=ns=$kubernetes['namespace_name'] pod=$kubernetes['pod_name'] label=$kubernetes['labels']",
				"--"}, files...)...)
			if r.code != 0 {
				t.Fatalf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
			}
			got := rs.lines(t, len(recs))
			if len(got) != len(recs) {
				t.Fatalf("rsyslog wrote %d messages, want %d\n%s", len(got), len(recs), rs.log)
			}
			for i := range recs {
				checkParsed(t, framing, i, got[i], recs[i].tag, &recs[i].r)
			}
		})
	}
}

// containerFile is the kubelet's /var/log/containers/<pod>_<namespace>_<container>-<id>.log.
var containerFile = regexp.MustCompile(`containers\.([^_]+)_([^_]+)_(.+)-[0-9a-f]{64}\.log$`)

func checkParsed(t *testing.T, framing string, i int, got []string, tag string, r *record.Record) {
	t.Helper()
	nil5424 := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	// Namespace, container and pod are the tag's (the kubelet's file name); the pod's
	// labels come with the filter's metadata only.
	file := containerFile.FindStringSubmatch(tag)
	if file == nil {
		t.Fatalf("fixture tag %q names no container", tag)
	}
	pod, app := file[1], file[2]+"/"+file[3]
	sd := fmt.Sprintf(`[k8s@32473 ns="%s" pod="%s"`, file[2], pod)
	labels, _ := r.Lookup("kubernetes", "labels")
	_ = labels.Range(func(k []byte, v record.Value) bool {
		b, _ := v.Bytes()
		sd += fmt.Sprintf(` label.%s="%s"`, k, b)
		return true
	})
	sd += "]"
	want := []string{nil5424(fixture.Text(r, "kubernetes", "host")), app, pod, nil5424(fixture.Text(r, "stream")), sd}
	for j, name := range []string{"hostname", "app-name", "procid", "msgid", "structured-data"} {
		if got[j] != want[j] && !(j == 0 && want[j] == "-") {
			t.Fatalf("%s record %d: %s = %q, want %q", framing, i, name, got[j], want[j])
		}
	}
	msg := got[5]
	wantMSG, isJSON, err := fixture.SyslogMSG(r, framing == "lf")
	if err != nil {
		t.Fatal(err)
	}
	if !isJSON && strings.HasSuffix(msg, " [truncated]") {
		if !strings.HasPrefix(wantMSG, strings.TrimSuffix(msg, " [truncated]")) || len(msg) < 99000 {
			t.Fatalf("%s record %d: badly truncated (%d bytes)", framing, i, len(msg))
		}
	} else if msg != wantMSG {
		t.Fatalf("%s record %d: msg %q, want %q", framing, i, msg, wantMSG)
	}
}

// Papertrail across an ocean: rsyslog 150 ms away behind a delay line, and the real .so
// flushing the same chunks from one thread, then from eight as eight Fluent Bit workers
// would. Every record of every flush arrives (each flush answered OK only once rsyslog's TCP
// acknowledged it), and the eight threads overlap their round trips on one connection:
// they take less than half the time of one thread (which takes a round trip a flush).
func TestHostRsyslogAtADistance(t *testing.T) {
	const rtt, repeat = 150 * time.Millisecond, 12
	line := delayline.Start(t, "tse", 217, rtt)
	// The two small chunks: the time then counts round trips, not TCP's slow start.
	files := fixtures(t, "kube-merged")[1:]
	want := map[string]int{}
	for _, f := range files {
		b := fixture.Batch(t, f)
		for i := range b.Records {
			msg, _, err := fixture.SyslogMSG(&b.Records[i], true)
			if err != nil {
				t.Fatal(err)
			}
			want[msgKey(msg)] += 2 * repeat // both runs
		}
	}
	pki := testpki.New(t, "localhost")
	rs := startRsyslogAt(t, pki, line)
	flush := func(threads int) time.Duration {
		start := time.Now()
		r := host(t, append([]string{"-q", "-t", fmt.Sprint(threads), "-n", fmt.Sprint(repeat), soPath, "-i",
			"-o", "sink=syslog", "-o", "address=" + rs.addr(), "-o", "server_name=localhost", "-o", "ca_file=" + pki.CAFile,
			"--"}, files...)...)
		if r.code != 0 {
			t.Fatalf("%d threads: exit %d\n%s\n%s", threads, r.code, r.stdout, r.stderr)
		}
		return time.Since(start)
	}
	one, eight := flush(1), flush(8)
	n := 0
	for _, c := range want {
		n += c
	}
	got := rs.lines(t, n)
	for _, l := range got {
		want[msgKey(l[5])]--
	}
	for msg, c := range want {
		if c != 0 {
			t.Fatalf("%.120q arrived %d times fewer than flushed (of %d messages in all)", msg, c, len(got))
		}
	}
	flushes := len(files) * repeat
	if eight > one/2 {
		t.Errorf("%d flushes took %v from 8 threads, %v from one: they did not overlap", flushes, eight, one)
	}
	t.Logf("%d flushes to rsyslog %v away: %v from one thread, %v from eight; all %d records arrived", flushes, rtt,
		one.Round(time.Millisecond), eight.Round(time.Millisecond), len(got))
}

// msgKey names a message by its start: the one line longer than max_size arrives cut.
func msgKey(msg string) string { return msg[:min(len(msg), 1000)] }

// A token destination (SolarWinds-hosted Papertrail takes the ingestion token as an SD-ID of
// its own), in the real engine to the real TLS receiver: every line arrives with the token
// element, and the token appears nowhere in the engine's log.
func TestEngineTokenDestination(t *testing.T) {
	bin := fluentBit(t)
	dir := t.TempDir()
	const token = "9c3a6b1e-8f2d-4e7a-b5c4-1d2e3f4a5b6c"
	copyLogs(t, filepath.Join(fixture.ContainerLogs(), "*.log"), dir)
	want := len(expected(t, fixtures(t, "kube-raw")))
	pki := testpki.New(t, "localhost")
	rs := startRsyslog(t, pki)
	conf := tailConf(t, dir, nil, []string{"Buffer_Max_Size 512k"},
		[]string{"Workers 1", "sink syslog", "address " + rs.addr(), "server_name localhost", "ca_file " + pki.CAFile,
			"token " + token, "exceptions none", "Retry_Limit no_limits"})
	logPath := filepath.Join(dir, "engine-output.txt")
	cmd := startEngine(t, bin, conf, logPath)
	got := rs.lines(t, want)
	_ = cmd.Process.Signal(syscall.SIGTERM)
	_ = cmd.Wait()
	if len(got) != want {
		t.Fatalf("%d messages, want %d", len(got), want)
	}
	for _, f := range got {
		if !strings.HasPrefix(f[4], "["+token+"@41058]") {
			t.Fatalf("structured data %q: the token element is not first", f[4])
		}
	}
	engineLog, _ := os.ReadFile(logPath)
	if bytes.Contains(engineLog, []byte(token)) || !bytes.Contains(engineLog, []byte("token=")) {
		t.Errorf("the token is in the engine's log, or the key is not listed:\n%s", engineLog)
	}
}
