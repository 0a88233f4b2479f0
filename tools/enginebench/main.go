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
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/trailstack/trailstack/testkit/fixture"
)

func main() {
	engine := flag.String("engine", envOr("FLUENT_BIT_BIN", "../shared/engine/fluent-bit"), "the Fluent Bit binary")
	so := flag.String("so", "build/out_trailstack.so", "the plugin")
	bin := flag.String("bin", "build", "where syslogdrain and fakelogging are")
	lines := flag.Int("lines", 1_000_000, "lines per run (with -rate: rate × seconds)")
	shapes := flag.String("shapes", strings.Join(fixture.Shapes, ","), "record shapes")
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
			check(writeLines(shape, layout(shape, logs), 0, *lines))
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
