package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

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
			if err := os.WriteFile(f, nil, 0o644); err != nil {
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
	switch base, _ := outputOptions(s.output); {
	case strings.HasSuffix(base, "syslog"):
		receiver = exec.Command(filepath.Join(s.bin, "syslogdrain"), "-dir", s.dir, "-expect", strconv.Itoa(s.lines))
	case strings.HasSuffix(base, "stackdriver"):
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
		go pace(s.shape, files, s.rate, s.lines)
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
