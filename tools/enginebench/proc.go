package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

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
