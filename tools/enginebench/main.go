// Command enginebench runs the real Fluent Bit engine over generated container logs, once
// per output: `null`, Fluent Bit's own C `out_syslog` (TLS, RFC 5424) and `out_stackdriver`
// (REST), and trailstack's two sinks as the shipped configuration runs them (Workers 2 unless
// -workers says otherwise).
// Each run ends when the receiver (syslogdrain or fakelogging, other processes) has counted
// every line; the engine's CPU (user + system, from /proc) and peak RSS are read then.
// A run's cost per record is its CPU beyond the `null` run's, divided by the lines.
//
//	enginebench -engine FLUENT_BIT -so out_trailstack.so -bin BUILD [-lines N] [-rate R -seconds S]
//
// Shapes: cri (tail with the cri parser, no filter: records without Kubernetes metadata),
// kube (the kubernetes filter's metadata, from a preload cache instead of an API server, as
// Fluent Bit's own tests do), and mixed (six containers of three pods under one tag, as a
// node-level tag gathers them: every chunk mixes containers and streams), and json (the
// kube shape of an application that logs JSON, merged into the record by the filter).
//
// With -rate, lines are appended at that pace for -seconds after the engine started, and
// peak RSS at a steady rate is the figure to read.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/trailstack/trailstack/testkit/fixture"
)

type pod struct{ ns, name, hash string }

var (
	pods = []pod{
		{"shop", "web-7c5ddbdf54-x2kqp", "7c5ddbdf54"},
		{"shop", "cart-5d9b8c7f6-abcde", "5d9b8c7f6"},
		{"blog", "api-6b8f7d9c4-wl9zt", "6b8f7d9c4"},
		{"blog", "worker-78d4b9c6f5-q7r2m", "78d4b9c6f5"},
	}
	// The mixed shape's pods each run an application and a sidecar.
	containers = []string{"app", "istio-proxy"}
)

type file struct {
	pod       pod
	container string
	path      string
}

func main() {
	engine := flag.String("engine", envOr("FLUENT_BIT_BIN", "../shared/engine/fluent-bit"), "the Fluent Bit binary")
	so := flag.String("so", "build/out_trailstack.so", "the plugin")
	bin := flag.String("bin", "build", "where syslogdrain and fakelogging are")
	lines := flag.Int("lines", 1_000_000, "lines per run (with -rate: rate × seconds)")
	shapes := flag.String("shapes", "cri,kube,mixed,json", "record shapes")
	outputs := flag.String("outputs", "null,c-syslog,syslog,c-stackdriver,stackdriver", "outputs, in order; null first for the differences")
	rate := flag.Int("rate", 0, "lines per second, written while the engine runs (0: all before it starts)")
	seconds := flag.Int("seconds", 30, "with -rate: for how long")
	workers := flag.Int("workers", 2, "Workers of every output but null (the shipped configuration has 32)")
	keep := flag.Bool("keep", false, "keep the work directory")
	runs := flag.Int("runs", 3, "runs of each output")
	timeout := flag.Duration("timeout", 10*time.Minute, "a run that has not delivered every line by then fails")
	chunks := flag.String("chunks", "", "write a 2 MB chunk of each shape (and its tag) here for the C host, and exit")
	profile := flag.String("profile", "", "write trailstack's CPU profiles here, one per shape and output")
	flag.Parse()
	if *chunks != "" {
		check(writeChunks(*chunks))
		return
	}
	if *rate > 0 {
		*lines = *rate * *seconds
	}
	for _, p := range []*string{engine, so, bin} {
		abs, err := filepath.Abs(*p)
		check(err)
		*p = abs
	}
	work, err := os.MkdirTemp("", "enginebench")
	check(err)
	if !*keep {
		defer os.RemoveAll(work)
	}
	fmt.Printf("enginebench: %d lines per run, %s, engine %s\n", *lines, map[bool]string{true: fmt.Sprintf("written at %d/s", *rate), false: "written before the engine starts"}[*rate > 0], *engine)
	fmt.Printf("%-6s %-14s %9s %9s %10s %10s %9s %12s\n", "shape", "output", "CPU s", "µs/line", "output's s", "Go rt's s", "RSS MiB", "lines/s")
	var results []result
	failed := 0
	for _, shape := range strings.Split(*shapes, ",") {
		// Runs alternate between the outputs, so that a slow minute of a shared machine
		// weighs on all of them; each output's median run is the figure.
		all := map[string][]result{}
		// Written once and read by every run: tail without a DB changes nothing in them.
		logs := filepath.Join(work, shape, "var", "log", "containers")
		if *rate == 0 {
			check(os.MkdirAll(logs, 0o755))
			check(writeLines(layout(shape, logs), 0, *lines, shape == "json"))
		}
		for i := 0; i < *runs; i++ {
			for _, out := range strings.Split(*outputs, ",") {
				dir := filepath.Join(work, fmt.Sprintf("%s-%s-%d", shape, out, i))
				spec := runSpec{engine: *engine, so: *so, bin: *bin, dir: dir, logs: logs, shape: shape, output: out, lines: *lines, rate: *rate, workers: *workers, timeout: *timeout}
				if *profile != "" {
					spec.profile = filepath.Join(*profile, fmt.Sprintf("%s-%s-%d.pprof", shape, out, i))
				}
				r, err := run(spec)
				if !*keep {
					os.RemoveAll(dir)
				}
				if err != nil {
					fmt.Printf("%-6s %-14s failed: %v\n", shape, out, err)
					failed++
					continue
				}
				all[out] = append(all[out], r)
				fmt.Printf("%-6s %-14s %9.2f %9.2f %10.2f %10.2f %9.0f %12.0f\n", shape, out, r.cpu, r.cpu/float64(*lines)*1e6, r.outCPU, r.runtimeCPU, r.rssMiB, float64(*lines)/r.wall.Seconds())
			}
		}
		null := median(all["null"])
		for _, out := range strings.Split(*outputs, ",") {
			if len(all[out]) == 0 {
				continue
			}
			m := median(all[out])
			if null != nil {
				m.beyond = (m.cpu - null.cpu) / float64(*lines) * 1e6
			}
			m.runs = all[out]
			results = append(results, *m)
		}
	}

	fmt.Printf("\nmedians of %d runs, CPU in µs per line: the output's own threads (workers, and the Go runtime's), and the\n", *runs)
	fmt.Printf("whole process's beyond the null output's; \"vs C\" is the ratio of the first to Fluent Bit's own output of the kind\n")
	fmt.Printf("| shape | output | output's threads | vs C | whole process beyond null | lines/s | peak RSS MiB |\n|---|---|---|---|---|---|---|\n")
	per := func(cpu float64) float64 { return cpu / float64(*lines) * 1e6 }
	for _, r := range results {
		ratio, own, beyond := "", fmt.Sprintf("%.2f", per(r.outCPU)), fmt.Sprintf("%.2f", r.beyond)
		if c := find(results, r.shape, "c-"+r.output); c != nil && c.outCPU > 0 {
			ratio = fmt.Sprintf("%.2f", r.outCPU/c.outCPU)
		}
		if r.output == "null" {
			own, beyond = "-", fmt.Sprintf("(%.2f in all)", per(r.cpu))
		}
		fmt.Printf("| %s | %s | %s | %s | %s | %.0f | %.0f |\n", r.shape, r.output, own, ratio, beyond, float64(*lines)/r.wall.Seconds(), r.rssMiB)
	}
	if failed > 0 {
		if !*keep {
			os.RemoveAll(work)
		}
		fmt.Printf("%d runs failed\n", failed)
		os.Exit(1)
	}
}

// writeChunks writes <shape>.msgpack and <shape>.tag for each of fixture.Shapes: the same
// shapes as chunks Fluent Bit would hand the plugin, for the C host's benchmarks.
func writeChunks(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, shape := range fixture.Shapes {
		b, data := fixture.ShapeBatch(shape, 2<<20)
		if err := os.WriteFile(filepath.Join(dir, shape+".msgpack"), data, 0o644); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, shape+".tag"), []byte(b.Tag), 0o644); err != nil {
			return err
		}
		fmt.Printf("%s %d records\n", shape, len(b.Records))
	}
	return nil
}

// median is a run with every figure the median of the runs', but peak RSS the largest.
func median(rs []result) *result {
	if len(rs) == 0 {
		return nil
	}
	mid := func(f func(result) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	m := rs[0]
	m.cpu = mid(func(r result) float64 { return r.cpu })
	m.outCPU = mid(func(r result) float64 { return r.outCPU })
	m.wall = time.Duration(mid(func(r result) float64 { return float64(r.wall) }))
	for _, r := range rs {
		m.rssMiB = max(m.rssMiB, r.rssMiB)
	}
	return &m
}

type result struct {
	shape, output string
	cpu, rssMiB   float64
	outCPU        float64 // the output's own threads
	runtimeCPU    float64 // of which the Go runtime's threads
	wall          time.Duration
	beyond        float64
	runs          []result
}

func find(rs []result, shape, output string) *result {
	for i := range rs {
		if rs[i].shape == shape && rs[i].output == output {
			return &rs[i]
		}
	}
	return nil
}

type runSpec struct {
	engine, so, bin, dir, shape, output string
	logs                                string // the shape's container logs, when written before the run
	profile                             string // TRAILSTACK_CPUPROFILE for the plugin
	lines, rate                         int
	workers                             int // of every output but null
	timeout                             time.Duration
}

func run(s runSpec) (result, error) {
	res := result{shape: s.shape, output: s.output}
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return res, err
	}
	logs := s.logs
	if s.rate > 0 {
		// Written during the run: fresh files each time.
		logs = filepath.Join(s.dir, "var", "log", "containers")
	}
	if err := os.MkdirAll(logs, 0o755); err != nil {
		return res, err
	}
	files := layout(s.shape, logs)
	if s.rate > 0 {
		for _, f := range files {
			if err := os.WriteFile(f.path, nil, 0o644); err != nil {
				return res, err
			}
		}
	}
	if s.shape == "kube" || s.shape == "json" {
		if err := preloadCache(filepath.Join(s.dir, "meta")); err != nil {
			return res, err
		}
	}

	// The receiver, in its own process, exits once it has counted every line.
	var receiver *exec.Cmd
	addrs := map[string]string{}
	switch {
	case strings.HasSuffix(s.output, "syslog"):
		receiver = exec.Command(filepath.Join(s.bin, "syslogdrain"), "-dir", s.dir, "-expect", strconv.Itoa(s.lines))
	case strings.HasSuffix(s.output, "stackdriver"):
		receiver = exec.Command(filepath.Join(s.bin, "fakelogging"), "-rest", s.dir, "-expect", strconv.Itoa(s.lines))
	}
	if receiver != nil {
		out, err := receiver.StdoutPipe()
		if err != nil {
			return res, err
		}
		receiver.Stderr = os.Stderr
		if err := receiver.Start(); err != nil {
			return res, err
		}
		defer receiver.Process.Kill()
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			k, v, _ := strings.Cut(sc.Text(), " ")
			addrs[k] = v
			if k == "listening" {
				break
			}
		}
		go func() {
			for sc.Scan() {
			}
		}()
	}

	port := freePort()
	conf := filepath.Join(s.dir, "fluent-bit.conf")
	if err := os.WriteFile(conf, []byte(config(s, logs, port, addrs)), 0o644); err != nil {
		return res, err
	}
	args := []string{"-c", conf}
	if !strings.HasPrefix(s.output, "c-") && s.output != "null" {
		args = append(args, "-e", s.so)
	}
	eng := exec.Command(s.engine, args...)
	eng.Env = append(os.Environ(), "NODE_NAME=bench-node")
	if s.profile != "" {
		eng.Env = append(eng.Env, "TRAILSTACK_CPUPROFILE="+s.profile)
	}
	logf, err := os.Create(filepath.Join(s.dir, "engine.log"))
	if err != nil {
		return res, err
	}
	defer logf.Close()
	eng.Stdout, eng.Stderr = logf, logf
	start := time.Now()
	if err := eng.Start(); err != nil {
		return res, err
	}
	engDone := make(chan struct{})
	go func() { eng.Wait(); close(engDone) }()
	defer func() {
		eng.Process.Signal(syscall.SIGTERM)
		select {
		case <-engDone:
		case <-time.After(15 * time.Second):
			eng.Process.Kill()
			<-engDone
		}
	}()
	if s.rate > 0 {
		go pace(files, s.rate, s.lines, s.shape == "json")
	}

	// Done when the receiver has every line (or, for null, the engine's metrics say so).
	finished := make(chan error, 1)
	if receiver != nil {
		go func() { finished <- receiver.Wait() }()
	} else {
		go func() {
			for nullRecords(port) < s.lines {
				time.Sleep(20 * time.Millisecond)
			}
			finished <- nil
		}()
	}
	select {
	case err := <-finished:
		if err != nil {
			return res, fmt.Errorf("receiver: %v (engine log: %s)", err, logf.Name())
		}
	case <-engDone:
		return res, fmt.Errorf("the engine exited (log: %s)", logf.Name())
	case <-time.After(s.timeout):
		return res, fmt.Errorf("timed out (engine log: %s)", logf.Name())
	}
	res.wall = time.Since(start)
	if res.outCPU, res.runtimeCPU, err = outputCPU(eng.Process.Pid); err != nil {
		return res, err
	}
	res.cpu, res.rssMiB, err = usage(eng.Process.Pid)
	return res, err
}

// layout names the shape's container log files as the kubelet does.
func layout(shape, dir string) []file {
	var fs []file
	n := 0
	for i, p := range pods {
		cs := []string{"nginx"}
		if shape == "mixed" {
			if i == 3 {
				break
			}
			cs = containers
		}
		for _, c := range cs {
			n++
			id := strings.Repeat(fmt.Sprintf("%02x", n), 32)
			fs = append(fs, file{p, c, filepath.Join(dir, fmt.Sprintf("%s_%s_%s-%s.log", p.name, p.ns, c, id))})
		}
	}
	return fs
}

// writeLines appends lines [from, to) round-robin over the files, in the CRI format:
// an nginx access line on stdout, and every tenth an error line on stderr; or, with
// json, an application's JSON line.
func writeLines(files []file, from, to int, json bool) error {
	ws := make([]*bufio.Writer, len(files))
	for i, f := range files {
		fh, err := os.OpenFile(f.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			return err
		}
		defer fh.Close()
		ws[i] = bufio.NewWriterSize(fh, 1<<20)
	}
	base := time.Now().Add(-time.Hour)
	for i := from; i < to; i++ {
		w := ws[i%len(ws)]
		ts := base.Add(time.Duration(i) * time.Microsecond).UTC().Format(time.RFC3339Nano)
		if json {
			stream, level := "stdout", "info"
			if i%10 == 9 {
				stream, level = "stderr", "error"
			}
			fmt.Fprintf(w, "%s %s F {\"level\":\"%s\",\"msg\":\"request served\",\"path\":\"/api/v1/items/%d\",\"status\":200,\"latency_ms\":%d.%d,\"user\":{\"id\":%d,\"tier\":\"free\"},\"seq\":%d}\n", ts, stream, level, i%5000, i%100, i%10, i%977, i)
			continue
		}
		if i%10 == 9 {
			fmt.Fprintf(w, "%s stderr F 2026/11/27 06:00:00 [error] 29#29: *%d open() \"/usr/share/nginx/html/favicon.ico\" failed (2: No such file or directory), client: 10.4.0.%d seq=%d\n", ts, i, i%250, i)
			continue
		}
		fmt.Fprintf(w, "%s stdout F 10.4.%d.%d - - [27/Nov/2026:06:00:00 +0000] \"GET /api/v1/items/%d HTTP/1.1\" 200 %d \"-\" \"Mozilla/5.0 (X11; Linux x86_64) bench/1.0\" rt=0.012 seq=%d\n", ts, i%7, i%250, i%5000, 512+i%4096, i)
	}
	for _, w := range ws {
		if err := w.Flush(); err != nil {
			return err
		}
	}
	return nil
}

// pace writes total lines at rate per second, in slices of 10 ms.
func pace(files []file, rate, total int, json bool) {
	const slice = 10 * time.Millisecond
	per := rate / 100
	start := time.Now()
	for done, k := 0, 0; done < total; k++ {
		n := min(per, total-done)
		if err := writeLines(files, done, done+n, json); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return
		}
		done += n
		time.Sleep(time.Until(start.Add(time.Duration(k+1) * slice)))
	}
}

// preloadCache writes each pod's object where the kubernetes filter's
// Kube_Meta_Preload_Cache_Dir looks for it: <namespace>_<pod>.meta.
func preloadCache(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, p := range pods {
		app := strings.SplitN(p.name, "-", 2)[0]
		obj := map[string]any{
			"apiVersion": "v1", "kind": "Pod",
			"metadata": map[string]any{
				"name": p.name, "namespace": p.ns, "uid": "4b0b3e2c-0d4a-4f52-9a57-" + p.hash + "00",
				"labels": map[string]string{
					"app": app, "pod-template-hash": p.hash, "app.kubernetes.io/name": app,
					"app.kubernetes.io/part-of": "bench", "team": "platform",
				},
				"annotations": map[string]string{"kubectl.kubernetes.io/restartedAt": "2026-11-27T06:00:00Z"},
				"ownerReferences": []map[string]any{{
					"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": app + "-" + p.hash,
					"uid": "9a0e6a1c-1111-4c4c-8d8d-" + p.hash + "00", "controller": true, "blockOwnerDeletion": true,
				}},
			},
			"spec": map[string]any{"nodeName": "bench-node", "containers": []map[string]any{{"name": "nginx", "image": "nginx:1.27.3"}}},
			"status": map[string]any{
				"hostIP": "10.128.0.7", "podIP": "10.4.0.5",
				"containerStatuses": []map[string]any{{
					"name": "nginx", "image": "docker.io/library/nginx:1.27.3",
					"imageID":     "docker.io/library/nginx@sha256:" + strings.Repeat("ab", 32),
					"containerID": "containerd://" + strings.Repeat("01", 32),
				}},
			},
		}
		b, err := json.Marshal(obj)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, p.ns+"_"+p.name+".meta"), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func config(s runSpec, logs string, port int, addrs map[string]string) string {
	// The tag holds the file's path (tail's `*`), as on a node.
	prefix := "kube." + strings.ReplaceAll(strings.TrimPrefix(logs, "/"), "/", ".") + "."
	tag := "kube.*"
	if s.shape == "mixed" {
		tag = "k8s_node.bench-node" // one tag for every file: chunks mix containers
	}
	var b strings.Builder
	fmt.Fprintf(&b, `[SERVICE]
    Flush        1
    Grace        2
    Log_Level    warn
    HTTP_Server  On
    HTTP_Listen  127.0.0.1
    HTTP_Port    %d

[INPUT]
    Name              tail
    Tag               %s
    Path              %s/*.log
    multiline.parser  cri
    Read_from_Head    On
    Refresh_Interval  1
    Buffer_Max_Size   512k
`, port, tag, logs)
	if s.shape == "kube" || s.shape == "json" {
		tokenFile := filepath.Join(s.dir, "token")
		os.WriteFile(tokenFile, []byte("bench"), 0o600)
		fmt.Fprintf(&b, `
[FILTER]
    Name                        kubernetes
    Match                       kube.*
    Kube_Tag_Prefix             %s
    Kube_URL                    https://127.0.0.1:1
    Kube_Token_File             %s
    Kube_Meta_Preload_Cache_Dir %s
    Merge_Log                   On
    Keep_Log                    Off
    Labels                      On
    Annotations                 Off
    Owner_References            On
    Buffer_Size                 2M
`, prefix, tokenFile, filepath.Join(s.dir, "meta"))
	}
	// Fluent Bit's out_stackdriver reads the resource from the tag: a container's from the
	// file name after tag_prefix, a node's from "k8s_node.<node>".
	resource := "k8s_container\n    tag_prefix             " + prefix
	if s.shape == "mixed" {
		resource = "k8s_node"
	}
	host, portStr, _ := strings.Cut(addrs["listening"], ":")
	switch s.output {
	case "null":
		b.WriteString("\n[OUTPUT]\n    Name  null\n    Match *\n")
	case "c-syslog":
		fmt.Fprintf(&b, `
[OUTPUT]
    Name               syslog
    Match              *
    Host               %s
    Port               %s
    Mode               tls
    tls                On
    tls.verify         Off
    Syslog_Format      rfc5424
    Syslog_Message_Key log
    Syslog_Appname_Key kubernetes['container_name']
    Retry_Limit        no_limits
    Workers            %d
`, host, portStr, s.workers)
	case "c-stackdriver":
		fmt.Fprintf(&b, `
[OUTPUT]
    Name                   stackdriver
    Match                  *
    resource               %s
    k8s_cluster_name       bench
    k8s_cluster_location   local
    cloud_logging_base_url https://%s
    metadata_server        http://%s
    tls.verify             Off
    Retry_Limit            no_limits
    Workers                %d
`, resource, addrs["rest"], addrs["metadata"], s.workers)
	case "syslog":
		fmt.Fprintf(&b, "%s    sink        syslog\n    address     %s\n    ca_file     %s\n",
			trailstackOutput(s.workers), addrs["listening"], filepath.Join(s.dir, "ca.pem"))
	case "stackdriver":
		fmt.Fprintf(&b, "%s    sink        stackdriver\n    endpoint    %s\n    endpoint_plaintext on\n"+
			"    project_id  bench\n    cluster_name bench\n    cluster_location local\n", trailstackOutput(s.workers), addrs["listening"])
	}
	return b.String()
}

// trailstackOutput is an [OUTPUT] of trailstack with the given workers; the sink's keys follow.
func trailstackOutput(workers int) string {
	return fmt.Sprintf(`
[OUTPUT]
    Name        trailstack
    Match       *
    Workers     %d
    Retry_Limit no_limits
`, workers)
}

// nullRecords is what the null output has taken, from the engine's own metrics.
func nullRecords(port int) int {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/api/v1/metrics", port))
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	var m struct {
		Output map[string]struct {
			ProcRecords int `json:"proc_records"`
		} `json:"output"`
	}
	if json.NewDecoder(resp.Body).Decode(&m) != nil {
		return 0
	}
	return m.Output["null.0"].ProcRecords
}

// usage reads a live process's CPU seconds (user + system, all threads) and peak RSS.
func usage(pid int) (cpu, rssMiB float64, err error) {
	if _, cpu, err = statCPU(fmt.Sprintf("/proc/%d/stat", pid)); err != nil {
		return 0, 0, err
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, l := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			rssMiB = kb / 1024
		}
	}
	return cpu, rssMiB, nil
}

// outputCPU is the CPU seconds of the threads that run an output's own code: its workers
// (Fluent Bit names them flb-out-<plugin>), and the threads the Go runtime starts for the
// plugin (named after the process, like the main thread, which they are not). The engine's
// own threads (the pipeline, where tail and the filters run) are left out: what remains is
// the output's cost without the input's noise.
func outputCPU(pid int) (cpu, runtimeCPU float64, err error) {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, t := range tasks {
		comm, c, err := statCPU(fmt.Sprintf("/proc/%d/task/%s/stat", pid, t.Name()))
		if err != nil {
			continue // exited meanwhile
		}
		if !strings.HasPrefix(comm, "flb-out-") && (comm != "fluent-bit" || t.Name() == strconv.Itoa(pid)) {
			continue
		}
		cpu += c
		if comm == "fluent-bit" {
			runtimeCPU += c
		}
	}
	return cpu, runtimeCPU, nil
}

// statCPU reads a process's or thread's stat file: its command and its CPU seconds (user
// and system: the 14th and 15th fields, counted after the command's closing parenthesis).
func statCPU(path string) (comm string, cpu float64, err error) {
	stat, err := os.ReadFile(path)
	if err != nil {
		return "", 0, err
	}
	open, end := strings.IndexByte(string(stat), '('), strings.LastIndexByte(string(stat), ')')
	f := strings.Fields(string(stat[end+2:]))
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return string(stat[open+1 : end]), (ut + st) / 100, nil // USER_HZ
}

// freePort is a port nobody listened on a moment ago, for the engine's HTTP server.
func freePort() int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	check(err)
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "enginebench:", err)
		os.Exit(1)
	}
}
