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

// TestRealFluentBitRestartLosesNothing: the engine reads the logs while the syslog receiver
// is down (every flush answers RETRY and the chunks wait in filesystem storage), is stopped,
// and a new engine on the same storage and tail DB starts once the receiver is up: every log
// line arrives. Runs with FLUENT_BIT_BIN.
func TestRealFluentBitRestartLosesNothing(t *testing.T) {
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

	conf := filepath.Join(dir, "fluent-bit.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`[SERVICE]
    Flush          1
    Grace          5
    Log_Level      info
    scheduler.base 1
    scheduler.cap  2
    storage.path   %[1]s/storage
[INPUT]
    Name             tail
    Tag              kube.*
    Path             %[1]s/*.log
    multiline.parser cri
    Read_from_Head   On
    DB               %[1]s/tail.db
    storage.type     filesystem
[OUTPUT]
    Name        trailstack
    Match       *
    Workers     1
    Retry_Limit no_limits
    sink        syslog
    address     tcp://%[2]s
    dial_timeout 1s
`, dir, addr)), 0o644); err != nil {
		t.Fatal(err)
	}
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
