package e2e

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/trailstack/trailstack/testkit/fixture"
)

// TestEngineRestartLosesNothing: the engine reads the logs while the syslog receiver
// is down (every flush answers RETRY and the chunks wait in filesystem storage), is stopped,
// and a new engine on the same storage and tail DB starts once the receiver is up: every log
// line arrives. Runs with FLUENT_BIT_BIN.
func TestEngineRestartLosesNothing(t *testing.T) {
	bin := fluentBit(t)
	dir := t.TempDir()
	var want []string
	// grafana's and nginx's logs: whole lines only (the api pod's has partial lines, which
	// the cri parser joins).
	for _, b := range copyLogs(t, filepath.Join(fixture.ContainerLogs(), "[gn]*.log"), dir) {
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			// CRI: time stream tag message
			if f := strings.SplitN(line, " ", 4); len(f) == 4 {
				want = append(want, f[3])
			}
		}
	}
	drain := goBuild(t, "./tools/syslogdrain", dir)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there until the second engine

	conf := tailConf(t, dir, []string{"scheduler.base 1", "scheduler.cap 2", "storage.path " + dir + "/storage"},
		[]string{"DB " + dir + "/tail.db", "storage.type filesystem"},
		[]string{"Workers 1", "Retry_Limit no_limits", "sink syslog", "address tcp://" + addr, "dial_timeout 1s"})
	firstLog := filepath.Join(dir, "engine-1.txt")
	first := startEngine(t, bin, conf, firstLog)
	waitFor(t, firstLog, "kept for retry", 1)
	_ = first.Process.Signal(syscall.SIGTERM)
	_ = first.Wait()

	rx := exec.Command(drain, "-tcp", "-addr", addr, "-print", "-expect", fmt.Sprint(len(want)), "-timeout", "60s")
	rxOut, _ := rx.StdoutPipe()
	if err := rx.Start(); err != nil {
		t.Fatal(err)
	}
	defer rx.Process.Kill()
	secondLog := filepath.Join(dir, "engine-2.txt")
	second := startEngine(t, bin, conf, secondLog)
	var got []string
	sc := bufio.NewScanner(rxOut)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		got = append(got, sc.Text())
	}
	_ = rx.Wait()
	_ = second.Process.Signal(syscall.SIGTERM)
	_ = second.Wait()
	all := strings.Join(got, "\n")
	for _, w := range want {
		if !strings.Contains(all, w[:min(len(w), 150)]) {
			b, _ := os.ReadFile(secondLog)
			t.Fatalf("lost across the restart: %q\nsecond engine:\n%s", w, b)
		}
	}
	t.Logf("%d log lines, all delivered after the restart (%d messages received)", len(want), len(got)-2)
}
