package conf

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// appPod is a workload's container on the node: containerd writes its log, the kubelet
// links it under /var/log/containers.
type appPod struct {
	ns, name string
	file     string // the log file, on the node's disk
	logfmt   bool   // key=value lines instead of text
	short    bool   // text lines of about 70 bytes (the log file's), as most applications write
	json     bool   // JSON lines, which the kubernetes filter merges into the record
	spoof    bool   // JSON lines that claim another pod's identity
	traces   int    // every traces-th line written is a stack trace instead (0: none)

	mu   sync.Mutex // guards seq and size, and orders writes with rotation: one writer, as containerd
	seq  int
	size int64
}

func podUID(ns, name string) string {
	h := sha256.Sum256([]byte("uid/" + ns + "/" + name))
	u := hex.EncodeToString(h[:16])
	return u[:8] + "-" + u[8:12] + "-" + u[12:16] + "-" + u[16:20] + "-" + u[20:]
}

func containerID(ns, name string) string {
	h := sha256.Sum256([]byte("container/" + ns + "/" + name))
	return hex.EncodeToString(h[:])
}

// newPod creates a pod's log file and link and registers it with the API stand-in;
// annotationBytes pads the pod object (a sidecar-injected pod, large annotations).
func (n *node) newPod(ns, name string, annotationBytes int) *appPod {
	n.t.Helper()
	ann := map[string]string{}
	if annotationBytes > 0 {
		ann["example.com/injected-config"] = strings.Repeat("x", annotationBytes)
	}
	return n.newAnnotatedPod(ns, name, ann)
}

func (n *node) newAnnotatedPod(ns, name string, ann map[string]string) *appPod {
	n.t.Helper()
	labels := map[string]string{"app": name, "app.kubernetes.io/name": strings.Split(name, "-")[0]}
	if i := strings.LastIndexByte(name, '-'); i > 0 {
		if j := strings.LastIndexByte(name[:i], '-'); j > 0 {
			labels["pod-template-hash"] = name[j+1 : i]
		}
	}
	n.kube.addPod(ns, name, labels, ann)
	p := &appPod{ns: ns, name: name}
	n.podFiles(p)
	return p
}

// podFiles creates the pod's log file and its link, as containerd and the kubelet do.
func (n *node) podFiles(p *appPod) {
	n.t.Helper()
	ns, name := p.ns, p.name
	varlog := n.hostPath("/var/log")
	dir := filepath.Join("pods", ns+"_"+name+"_"+podUID(ns, name), "app")
	p.file = filepath.Join(varlog, dir, "0.log")
	writeFile(n.t, p.file, nil)
	link := filepath.Join(varlog, "containers", fmt.Sprintf("%s_%s_app-%s.log", name, ns, containerID(ns, name)))
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		n.t.Fatal(err)
	}
	// The link's target is the path inside the pod, as on a node.
	if err := os.Symlink(filepath.Join("/var/log", dir, "0.log"), link); err != nil {
		n.t.Fatal(err)
	}
}

// write appends count lines to the pod's log as containerd does (CRI format).
func (n *node) write(p *appPod, count int) {
	n.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	f, err := os.OpenFile(p.file, os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		n.t.Fatal(err)
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 256<<10)
	ids := make([]string, 0, count)
	for i := 0; i < count; i++ {
		ts := time.Now().UTC().Format("2006-01-02T15:04:05.000000000Z07:00")
		stream := "stdout"
		if p.seq%10 == 9 {
			stream = "stderr"
		}
		line := fmt.Sprintf("%s %s F pod=%s seq=%d GET /api/v1/items?page=%d 200 %s\n", ts, stream, p.name, p.seq, p.seq, strings.Repeat("a", 120))
		if p.short {
			line = fmt.Sprintf("%s %s F GET /items 200 12ms pod=%s seq=%d\n", ts, stream, p.name[:min(len(p.name), 8)], p.seq)
		}
		if p.json {
			line = fmt.Sprintf(`%s %s F {"level":"info","msg":"request done","path":"/api/v1/items","status":200,"ms":12,"pod":"%s","seq":"%d"}`+"\n", ts, stream, p.name, p.seq)
		}
		if p.logfmt {
			line = fmt.Sprintf("%s %s F level=info msg=\"request done\" pod=%s seq=%d\n", ts, stream, p.name, p.seq)
		}
		if p.spoof {
			line = fmt.Sprintf(`%s %s F {"msg":"pod=%s seq=%d","stream":"audit","kubernetes":{"namespace_name":"kube-system","pod_name":"kube-apiserver-0","container_name":"kube-apiserver","host":"victim-node","labels":{"tier":"control-plane"}}}`+"\n", ts, stream, p.name, p.seq)
		}
		if p.traces > 0 && p.seq%p.traces == p.traces-1 {
			// A trace counts as one line: its id is on one of its lines, and it must
			// arrive whole, as one message.
			tr := traceLines(p.name, p.seq)
			for _, l := range tr {
				l = fmt.Sprintf("%s %s F %s\n", ts, stream, l)
				w.WriteString(l)
				p.size += int64(len(l))
			}
			n.podMu.Lock()
			n.traces[p.name+"#"+strconv.Itoa(p.seq)] = tr
			n.podMu.Unlock()
			ids = append(ids, p.name+"#"+strconv.Itoa(p.seq))
			p.seq++
			continue
		}
		w.WriteString(line)
		p.size += int64(len(line))
		ids = append(ids, p.name+"#"+strconv.Itoa(p.seq))
		p.seq++
	}
	if err := w.Flush(); err != nil {
		n.t.Fatal(err)
	}
	n.podMu.Lock()
	n.want = append(n.want, ids...)
	n.podMu.Unlock()
}

// rotate is the kubelet's log rotation: the rotated files before it are compressed
// (N.log.<time>.gz, written beside and renamed, the plain one deleted), then the file is
// renamed N.log.<time> and containerd reopens a new one at the same path.
func (n *node) rotate(p *appPod) {
	p.mu.Lock()
	defer p.mu.Unlock()
	older, _ := filepath.Glob(p.file + ".*[0-9]")
	for _, o := range older {
		data := readFile(n.t, o)
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		zw.Write(data)
		zw.Close()
		writeFile(n.t, o+".gz.tmp", b.Bytes())
		if err := os.Rename(o+".gz.tmp", o+".gz"); err != nil {
			n.t.Fatal(err)
		}
		os.Remove(o)
	}
	if err := os.Rename(p.file, p.file+"."+time.Now().UTC().Format("20060102-150405")); err != nil {
		n.t.Fatal(err)
	}
	writeFile(n.t, p.file, nil)
	p.size = 0
}

// logged is how many bytes the pod's current file holds.
func (p *appPod) logged() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.size
}

// writer writes lines to pods in the background at about rate lines/s until stopped.
func (n *node) writer(rate int, pods ...*appPod) (stop func()) {
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				for _, p := range pods {
					n.write(p, max(rate/10, 1))
				}
			}
		}
	}()
	return func() { close(done); <-finished }
}

// expected is every line id written so far.
func (n *node) expected() []string {
	n.podMu.Lock()
	defer n.podMu.Unlock()
	return append([]string(nil), n.want...)
}

// delivery is what one destination got of what was written.
type delivery struct {
	name                string
	arrived, lost, dups int
	anonymous           int
	wrongName           []string
}

func (d delivery) String() string {
	return fmt.Sprintf("%s: %d arrived, %d lost, %d duplicates, %d without metadata", d.name, d.arrived, d.lost, d.dups, d.anonymous)
}

func (n *node) deliveries(want []string) []delivery {
	var out []delivery
	for _, d := range []struct {
		name string
		t    *tally
	}{{"papertrail", n.papert.tally}, {"cloud-logging", n.cloud.tally}} {
		a, l, dup := d.t.count(want)
		d.t.mu.Lock()
		out = append(out, delivery{name: d.name, arrived: a, lost: l, dups: dup, anonymous: d.t.anonymous, wrongName: append([]string(nil), d.t.wrongName...)})
		d.t.mu.Unlock()
	}
	return out
}

// waitDelivered waits until every line written so far has arrived at both destinations (or
// the ones named), then checks identity: every line under its own pod, none without
// metadata. Lines written while it waits are not waited for: a writer may still be running.
func (n *node) waitDelivered(timeout time.Duration, a *agent, only ...string) []delivery {
	n.t.Helper()
	deadline := time.Now().Add(timeout)
	want := n.expected()
	for {
		ds := n.deliveries(want)
		done := true
		for _, d := range ds {
			if d.lost > 0 && (len(only) == 0 || strings.Contains(strings.Join(only, ","), d.name)) {
				done = false
			}
		}
		if done {
			for _, d := range ds {
				if d.anonymous > 0 || len(d.wrongName) > 0 {
					n.t.Errorf("%v; under another identity: %v", d, d.wrongName)
				}
			}
			return ds
		}
		if time.Now().After(deadline) {
			msg := ""
			if a != nil {
				msg = a.tail()
			}
			n.t.Fatalf("not delivered after %v: %v\nagent log:\n%s", timeout, ds, msg)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// traceLines is a stack trace as a runtime writes it, one line each: Java, Python and Go in
// turn, the line id (pod=P seq=N) where the language's syntax leaves room for it.
func traceLines(pod string, seq int) []string {
	id := fmt.Sprintf("pod=%s seq=%d", pod, seq)
	var tr []string
	switch seq % 3 {
	case 0:
		tr = []string{"java.lang.IllegalStateException: order failed " + id}
		for k := 1; k <= 12; k++ {
			tr = append(tr, fmt.Sprintf("\tat com.example.shop.Orders.step%d(Orders.java:%d)", k, 40+k))
		}
		tr = append(tr, "Caused by: java.io.IOException: disk full",
			"\tat java.base/java.io.FileOutputStream.write(Native Method)", "\t... 12 more")
	case 1:
		tr = []string{"Traceback (most recent call last):"}
		for k := 1; k <= 4; k++ {
			tr = append(tr, fmt.Sprintf(`  File "/app/shop/orders.py", line %d, in step%d`, 10+k, k), fmt.Sprintf("    step%d()", k+1))
		}
		tr = append(tr, "ZeroDivisionError: division by zero "+id)
	default:
		tr = []string{"panic: runtime error: index out of range [5] with length 3 " + id, "", "goroutine 1 [running]:"}
		for k := 1; k <= 4; k++ {
			tr = append(tr, fmt.Sprintf("main.step%d(0xc00001%04d)", k, k), fmt.Sprintf("\t/app/main.go:%d +0x1d", 10+k))
		}
	}
	return tr
}

// writeLong writes one logical line of about size bytes as containerd writes a long line:
// physical lines of 16 KiB marked partial (P), the last full (F), which tail's cri parser
// joins. It returns the line as the application wrote it.
func (n *node) writeLong(p *appPod, size int) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var line strings.Builder
	fmt.Fprintf(&line, "pod=%s seq=%d ", p.name, p.seq)
	for i := 0; line.Len() < size; i++ {
		fmt.Fprintf(&line, "chunk %d of a long line; ", i)
	}
	text := line.String()
	f, err := os.OpenFile(p.file, os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		n.t.Fatal(err)
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	ts := time.Now().UTC().Format("2006-01-02T15:04:05.000000000Z07:00")
	for rest := text; rest != ""; {
		part, tag := rest[:min(len(rest), 16<<10)], "P"
		if rest = rest[len(part):]; rest == "" {
			tag = "F"
		}
		fmt.Fprintf(w, "%s stdout %s %s\n", ts, tag, part)
		p.size += int64(len(part) + 40)
	}
	if err := w.Flush(); err != nil {
		n.t.Fatal(err)
	}
	n.podMu.Lock()
	n.want = append(n.want, p.name+"#"+strconv.Itoa(p.seq))
	n.podMu.Unlock()
	p.seq++
	return text
}
