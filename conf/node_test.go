package conf

import (
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
)

// bigPod pads a pod object past the kubernetes filter's default 32 KiB Buffer_Size.
const bigPod = 40 << 10

func report(t *testing.T, n *node, scenario string, ds []delivery, extra string) {
	t.Helper()
	for _, d := range ds {
		if d.lost != 0 {
			t.Errorf("%s: %v", scenario, d)
		}
		if d.name == "cloud-logging" {
			extra = fmt.Sprintf(" (%d with an insertId already written)%s", n.cloud.resent(), extra)
		}
		t.Logf("%s: %v%s", scenario, d, extra)
	}
}

// Steady state: pods log, one of them larger than 32 KiB as an API object, and every line
// arrives at both destinations under its own pod's identity. A pod that names a parser in
// its annotation gets its lines parsed (the parsers file is in the ConfigMap).
func TestNodeSteadyState(t *testing.T) {
	n := newNode(t)
	api, big := n.newPod("blog", "api-5d9b8c7f6-abcde", 0), n.newPod("mesh", "big-7f9c8d6b5-qwert", bigPod)
	grafana := n.newAnnotatedPod("monitoring", "grafana-6b8f7d9c4-wl9zt", map[string]string{"fluentbit.io/parser": "logfmt"})
	grafana.logfmt = true
	n.write(api, 1000)
	a := n.startAgent()
	a.waitReady()
	n.write(big, 1000)
	n.write(api, 1000)
	n.write(grafana, 200)
	// A pod that starts under a running agent has its labels on its first line.
	web := n.newPod("shop", "web-7c5ddbdf54-x2kqp", 0)
	n.write(web, 1)
	ds := n.waitDelivered(60*time.Second, a)
	if l := n.cloud.labelsOf(web.name); l["k8s-pod/app"] != web.name {
		t.Errorf("the first line of a pod started under the agent has no labels: %v", l)
	}
	if got := n.cloud.jsonEntries(grafana.name); got != 200 {
		t.Errorf("%d of 200 logfmt lines of a pod annotated fluentbit.io/parser: logfmt were parsed", got)
	}
	// The labels GKE's agent writes: the node, the pod's labels with '_' for '.', and the
	// top-level controller from the pod's ownerReferences (Owner_References On).
	l := n.cloud.labelsOf(api.name)
	for k, want := range map[string]string{
		"compute.googleapis.com/resource_name":     nodeName,
		"k8s-pod/app_kubernetes_io/name":           "api",
		"logging.gke.io/top_level_controller_type": "Deployment",
		"logging.gke.io/top_level_controller_name": "api",
	} {
		if l[k] != want {
			t.Errorf("label %s = %q, want %q (all: %v)", k, l[k], want, l)
		}
	}
	took, killed := a.stop()
	if killed {
		t.Errorf("killed at the grace period")
	}
	a.checkNoRestart()
	// Papertrail's port is a credential: the agent's log never shows it.
	if port := n.papert.addr[strings.LastIndexByte(n.papert.addr, ':'):]; strings.Contains(a.output(), port) || !strings.Contains(a.output(), papertrailHost+":*****") {
		t.Errorf("the agent's log shows the Papertrail port %s, or not the host", port)
	}
	report(t, n, "steady state", ds, ", SIGTERM to exit "+took.Round(time.Millisecond).String())
}

// The kubelet rotates a container's log while no agent runs (an upgrade's gap): the lines
// written to the rotated file after the agent stopped arrive, once, with everything else;
// trailstack-launch hands the file back to tail, whose first scan would otherwise drop its
// offset. With two rotations the kubelet has compressed the first rotated file by then: its
// rest after tail's offset is decompressed for tail, and the second is read whole.
func TestNodeRotationWhileNoAgentRuns(t *testing.T) {
	for _, rotations := range []int{1, 2} {
		t.Run(fmt.Sprintf("%d rotations", rotations), func(t *testing.T) {
			n, api, old := newRunningNode(t)
			n.write(api, 100)
			n.waitDelivered(60*time.Second, old)
			old.stopCleanly()
			for i := 0; i < rotations; i++ {
				if i > 0 {
					time.Sleep(1100 * time.Millisecond) // rotated files are named by the second
				}
				n.write(api, 100) // into the file that is then rotated
				n.rotate(api)
			}
			n.write(api, 100)
			if rotations == 1 {
				// A pod's args (a Helm chart's, a user's) replace only Fluent Bit's
				// arguments, the image's CMD: the launcher still runs first.
				n.c.Args = []string{"-c", "/fluent-bit/etc/fluent-bit.yaml"}
			}
			next := n.startAgent()
			next.waitReady()
			ds := n.waitDelivered(60*time.Second, next)
			next.stopCleanly()
			onceEach(t, ds)
			report(t, n, fmt.Sprintf("%d rotations while no agent ran", rotations), ds, ", "+handedLine(next.output()))
		})
	}
}

// Rotations under a running agent that cannot deliver (Papertrail stops reading): tail
// reads on into the disk buffer whatever the destinations do, so a rotated file is read to
// its end long before tail lets it go (Rotate_Wait), and each is read once.
func TestNodeRotationsUnderALaggingAgent(t *testing.T) {
	n, api, a := newRunningNode(t)
	n.papert.setReading(false)
	start := time.Now()
	for r := 0; r < 3; r++ {
		for api.logged() < 10<<20 { // the kubelet's containerLogMaxSize on GKE
			n.write(api, 5000)
		}
		n.rotate(api)
		time.Sleep(1100 * time.Millisecond) // rotated files are named by the second
	}
	burst := time.Since(start) - 3*1100*time.Millisecond
	n.write(api, 1000)
	n.waitDelivered(120*time.Second, a, "cloud-logging")
	n.papert.setReading(true)
	ds := n.waitDelivered(300*time.Second, a)
	a.stopCleanly()
	onceEach(t, ds)
	report(t, n, "3 rotations of 10 MiB while Papertrail did not read", ds, fmt.Sprintf(", written at %.0f MiB/s", 30/burst.Seconds()))
}

// onceEach fails the test for any line that arrived twice.
func onceEach(t *testing.T, ds []delivery) {
	t.Helper()
	for _, d := range ds {
		if d.dups != 0 {
			t.Errorf("%v: want every line once", d)
		}
	}
}

// handedLine is what trailstack-launch said it handed to tail.
func handedLine(log string) string {
	return regexp.MustCompile(`rotated logs: [^\n]*`).FindString(log)
}

// No pod can log under another's identity: pods write JSON lines that claim to be the API
// server on another node (a kubernetes map and a stream of their own), one with the
// filter's metadata, one whose lookup fails (the API server does not know it). Every line
// arrives under the pod that wrote it, from this node, in its runtime stream.
func TestNodeNoPodSpeaksForAnother(t *testing.T) {
	n := newNode(t)
	known := n.newPod("blog", "api-5d9b8c7f6-abcde", 0)
	known.spoof = true
	unknown := &appPod{ns: "blog", name: "ghost-7d9f8c6b5-lkjhg", spoof: true}
	n.podFiles(unknown) // its log exists, the API server has no such pod
	a := n.startAgent()
	a.waitReady()
	n.write(known, 300)
	n.write(unknown, 300)
	ds := n.waitDelivered(60*time.Second, a) // fails on any line under another identity
	a.stop()
	report(t, n, "spoofed identity", ds, "")
}

// The plugin's metrics on a running node, through an outage: Papertrail stops reading for
// longer than ack_timeout, then reads again. Every line arrives; the delivered counters equal
// the distinct lines each destination got, the retries show, and every metric the alert
// rules and the dashboard name is in the scrape of the plugin's and Fluent Bit's endpoints.
func TestNodeMetricsThroughAnOutage(t *testing.T) {
	n, api, a := newRunningNode(t)
	stopWriter := n.writer(500, api)
	time.Sleep(2 * time.Second)
	n.papert.setReading(false)
	time.Sleep(14 * time.Second) // past ack_timeout (10 s): flushes fail and are retried
	n.papert.setReading(true)
	stopWriter()
	ds := n.waitDelivered(120*time.Second, a)
	scraped := map[string]bool{}
	var out string
	// The counters move once Fluent Bit has the answers: poll until they hold the total.
	want := float64(len(n.expected()))
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		out = scrapeNames(t, "http://127.0.0.1:2021/metrics", scraped)
		v1, _ := sample(out, `trailstack_records_delivered_total{instance="trailstack.0",sink="syslog"}`)
		v2, _ := sample(out, `trailstack_records_delivered_total{instance="trailstack.1",sink="stackdriver"}`)
		if v1 == want && v2 == want || time.Now().After(deadline) {
			break
		}
	}
	scrapeNames(t, "http://127.0.0.1:2020/api/v2/metrics/prometheus", scraped)
	for series, check := range map[string]func(float64) bool{
		`trailstack_records_delivered_total{instance="trailstack.0",sink="syslog"}`:                      func(v float64) bool { return v == want },
		`trailstack_records_delivered_total{instance="trailstack.1",sink="stackdriver"}`:                 func(v float64) bool { return v == want },
		`trailstack_flushes_total{instance="trailstack.0",result="retry",sink="syslog"}`:                 func(v float64) bool { return v > 0 },
		`trailstack_records_dropped_total{instance="trailstack.0",reason="corrupt_chunk",sink="syslog"}`: func(v float64) bool { return v == 0 },
		`trailstack_last_success_timestamp_seconds{instance="trailstack.1",sink="stackdriver"}`:          func(v float64) bool { return v > float64(time.Now().Add(-time.Minute).Unix()) },
	} {
		if v, ok := sample(out, series); !ok || !check(v) {
			t.Errorf("%s = %v (found %v), %d lines written", series, v, ok, int(want))
		}
	}
	checkMonitoringAgainst(t, scraped)
	a.stopCleanly()
	retries, _ := sample(out, `trailstack_flushes_total{instance="trailstack.0",result="retry",sink="syslog"}`)
	report(t, n, "metrics through an outage", ds, fmt.Sprintf(", %v syslog flushes retried", retries))
}

var (
	tracesByFluentBit = flag.Bool("traces.fluent-bit-multiline", false, "TestNodeStackTraces: join with Fluent Bit's multiline filter instead, and report")
	tracesNoKill      = flag.Bool("traces.no-kill", false, "TestNodeStackTraces: let the agent run throughout")
)

// Stack traces among ordinary lines: 1,000 Java, Python and Go traces among 50,000 ordinary
// lines at about 5,000 lines/s, the agent killed outright (SIGKILL) halfway and the next one
// started. Every trace arrives as one Papertrail message and one Cloud Logging entry, whole
// (at most one cut by a chunk boundary), no ordinary line is joined to one, and nothing is
// lost. With -traces.fluent-bit-multiline, Fluent Bit's own multiline filter joins them
// instead, and the test reports what arrived.
func TestNodeStackTraces(t *testing.T) {
	n := newNodeWith(t, nodeOptions{fluentBitMultiline: *tracesByFluentBit})
	api := n.newPod("blog", "api-5d9b8c7f6-abcde", 0)
	api.traces = 51 // one item in 51 is a trace of 10 to 16 lines
	n.papert.keepTexts()
	n.cloud.keepTexts()
	first := n.startAgent()
	first.waitReady()
	// 51,000 items at 4,080 a second (about 5,000 lines), while the agent is killed at
	// 6 s and the next one starts.
	const items, total = 4080, 51_000
	written := make(chan struct{})
	go func() {
		defer close(written)
		start := time.Now()
		for k := 0; k < total/(items/10); k++ {
			n.write(api, items/10)
			time.Sleep(time.Until(start.Add(time.Duration(k+1) * 100 * time.Millisecond)))
		}
	}()
	next := first
	if !*tracesNoKill {
		time.Sleep(6 * time.Second)
		first.kill()
		next = n.startAgent()
		next.waitReady()
	}
	<-written
	var ds []delivery
	if *tracesByFluentBit {
		// What the filter loses never arrives: report what did once nothing more comes.
		for last := -1; ; time.Sleep(5 * time.Second) {
			ds = n.deliveries(n.expected())
			if ds[0].arrived == last {
				break
			}
			last = ds[0].arrived
		}
	} else {
		ds = n.waitDelivered(180*time.Second, next)
	}
	next.stopCleanly()
	n.podMu.Lock()
	defer n.podMu.Unlock()
	extra := ""
	for _, d := range []struct {
		name string
		t    *tally
	}{{"Papertrail", n.papert.tally}, {"Cloud Logging", n.cloud.tally}} {
		whole, merged := d.t.whole(n.traces)
		if !*tracesByFluentBit && (whole < len(n.traces)-1 || len(merged) > 0) {
			t.Errorf("%s: %d of %d traces whole; lines joined to another: %q", d.name, whole, len(n.traces), merged)
		}
		extra += fmt.Sprintf(", %s: %d of %d traces whole, %d messages holding two lines", d.name, whole, len(n.traces), len(merged))
	}
	if *tracesByFluentBit {
		t.Logf("stack traces joined by Fluent Bit's multiline filter: %v%s", ds, extra)
		return
	}
	report(t, n, map[bool]string{false: "stack traces, SIGKILL halfway", true: "stack traces"}[*tracesNoKill], ds, extra)
}

// A 1 MB line (a heap dump, a large JSON document): containerd writes it as 16 KiB partial
// lines, tail's cri parser joins them, and it arrives at Cloud Logging whole, as split
// entries each within the API's limit that put it back together (the stand-in joins them as
// the console does); Papertrail gets it cut at max_size, its own limit.
func TestNodeLongLine(t *testing.T) {
	n, api, a := newRunningNode(t)
	n.cloud.keepTexts()
	n.write(api, 100)
	long := n.writeLong(api, 1<<20)
	n.write(api, 100)
	ds := n.waitDelivered(60*time.Second, a)
	a.stopCleanly()
	id := api.name + "#100"
	n.cloud.mu.Lock()
	texts := n.cloud.texts[id]
	n.cloud.mu.Unlock()
	if len(texts) != 1 || texts[0] != long {
		t.Errorf("the 1 MB line arrived at Cloud Logging as %d texts, want it whole once", len(texts))
	}
	if l := n.cloud.largestEntry(); l > 256<<10 {
		t.Errorf("an entry of %d bytes, over the API's limit", l)
	}
	report(t, n, "a 1 MB line", ds, fmt.Sprintf(", largest Cloud Logging entry %d bytes", n.cloud.largestEntry()))
}

// A token destination, set as a user sets it: its token in the Secret, through the
// DaemonSet's environment into the syslog output. Every message carries the token element,
// and the token is nowhere in the agent's log.
func TestNodeTokenDestination(t *testing.T) {
	const token = "9c3a6b1e-8f2d-4e7a-b5c4-1d2e3f4a5b6c"
	n := newNodeWith(t, nodeOptions{papertrailToken: token})
	api := n.newPod("blog", "api-5d9b8c7f6-abcde", 0)
	a := n.startAgent()
	a.waitReady()
	n.write(api, 500)
	ds := n.waitDelivered(60*time.Second, a)
	a.stopCleanly()
	n.papert.mu.Lock()
	tokens := maps.Clone(n.papert.tokens)
	n.papert.mu.Unlock()
	if len(tokens) != 1 || tokens[token] < 500 {
		t.Errorf("messages by token: %v, want all 500 with the Secret's", tokens)
	}
	if strings.Contains(a.output(), token) {
		t.Error("the token is in the agent's log")
	}
	report(t, n, "token destination", ds, fmt.Sprintf(", %d messages with the token element", tokens[token]))
}

// Cloud Logging refusing part of a node's load (a quota of 20 requests a second against
// the ~110 a second of 110 containers' chunks): nothing is lost, the backlog drains once the
// writers stop, and the plugin's log says so in one line per output and cause a minute, not
// one per container; the throttled requests are counted in a series an alert reads.
func TestNodeCloudLoggingThrottled(t *testing.T) {
	n := newNode(t)
	pods := make([]*appPod, 110)
	for i := range pods {
		pods[i] = n.newPod(fmt.Sprintf("ns%d", i%7), fmt.Sprintf("app%d-5d9b8c7f6-x%04d", i, i), 0)
	}
	n.cloud.setQuota(20)
	a := n.startAgent()
	a.waitReady()
	const writing = 90 * time.Second
	start := time.Now()
	stop := n.spread(2000, pods)
	time.Sleep(writing)
	stop()
	ds := n.waitDelivered(5*time.Minute, a)
	drained := time.Since(start) - writing
	scrape := scrapeNames(t, "http://127.0.0.1:2021/metrics", map[string]bool{})
	a.stopCleanly()
	out := a.output()
	var plugin, engine int
	for _, l := range strings.Split(out, "\n") {
		switch {
		case strings.Contains(l, "[output:trailstack:") && strings.Contains(l, "kept for retry"):
			plugin++
		case strings.Contains(l, "failed to flush chunk"):
			engine++
		}
	}
	minutes := int(time.Since(start)/time.Minute) + 1
	if plugin > 2*minutes || plugin >= len(pods) {
		t.Errorf("%d 'kept for retry' lines in %d minutes: want at most one per output and cause a minute", plugin, minutes)
	}
	if !strings.Contains(scrape, `trailstack_stackdriver_requests_total{code="ResourceExhausted",instance="trailstack.1",sink="stackdriver"}`) {
		t.Error("no series counts the throttled requests")
	}
	report(t, n, "Cloud Logging at 20 requests/s", ds, fmt.Sprintf(", %d requests throttled, drained %v after the writers stopped, %d plugin lines and %d 'failed to flush chunk' lines of the engine in %d minutes",
		n.cloud.throttledRequests(), drained.Round(time.Second), plugin, engine, minutes))
}

// storedPerLogByte is the disk the engine's buffer takes per byte of container log (the
// kubelet's files, CRI prefix included), as measured by TestNodeStoredBytes with the shipped
// pipeline (cri parser, the kubernetes filter's metadata); the README's sizing rests on it.
var storedPerLogByte = map[string]float64{"short text": 8.4, "text": 3.7, "json": 4.5}

// The buffer's bytes on disk per byte of container log, for short text lines (about 70 bytes
// a line), longer ones (about 230) and JSON lines, each with its pod's metadata: both
// destinations down, every line read into filesystem chunks, the chunks' size on disk over
// the log files'. Within a fifth of what the README's sizing says.
func TestNodeStoredBytes(t *testing.T) {
	for _, shape := range []string{"short text", "text", "json"} {
		t.Run(shape, func(t *testing.T) {
			n := newNode(t)
			n.papert.setReading(false)
			n.cloud.setDown(codes.Unavailable)
			pods := make([]*appPod, 20)
			for i := range pods {
				pods[i] = n.newPod(fmt.Sprintf("ns%d", i%4), fmt.Sprintf("app%d-5d9b8c7f6-x%04d", i, i), 0)
				pods[i].short, pods[i].json = shape == "short text", shape == "json"
			}
			a := n.startAgent()
			a.waitReady()
			const each = 2000
			var logBytes int64
			for _, p := range pods {
				n.write(p, each)
				logBytes += p.size
			}
			want := float64(each * len(pods))
			deadline := time.Now().Add(60 * time.Second)
			for {
				m := scrapeNames(t, "http://127.0.0.1:2020/api/v2/metrics/prometheus", map[string]bool{})
				if v, _ := sample(m, `fluentbit_input_records_total{name="tail.0"}`); v >= want {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("tail did not read %v lines in 60 s", want)
				}
				time.Sleep(200 * time.Millisecond)
			}
			time.Sleep(3 * time.Second) // the last chunks are written at the next flush
			var stored, apparent int64
			filepath.Walk(filepath.Join(n.hostPath("/var/lib/trailstack"), "storage"), func(_ string, fi os.FileInfo, err error) error {
				if err == nil && fi.Mode().IsRegular() {
					apparent += fi.Size()
					stored += fi.Sys().(*syscall.Stat_t).Blocks * 512
				}
				return nil
			})
			a.kill()
			ratio := float64(stored) / float64(logBytes)
			t.Logf("stored bytes, %s lines of %d bytes with metadata: %d log bytes, %d bytes on disk (%d apparent): %.2f a log byte",
				shape, logBytes/int64(want), logBytes, stored, apparent, ratio)
			if doc := storedPerLogByte[shape]; ratio > doc*1.2 || ratio < doc*0.8 {
				t.Errorf("%.2f bytes on disk a log byte, the README's sizing says %.1f", ratio, doc)
			}
		})
	}
}
