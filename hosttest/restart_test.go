package hosttest

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRealFluentBitRestartLosesNothing: the engine reads the logs while the syslog receiver
// is down (every flush answers RETRY and the chunks wait in filesystem storage), is stopped,
// and a new engine on the same storage and tail DB starts once the receiver is up: every log
// line arrives. Runs with FLUENT_BIT_BIN.
func TestRealFluentBitRestartLosesNothing(t *testing.T) {
	bin := os.Getenv("FLUENT_BIT_BIN")
	if bin == "" {
		t.Skip("skipped: set FLUENT_BIT_BIN to a fluent-bit binary to run the plugin in the real engine")
	}
	dir := t.TempDir()
	logs, _ := filepath.Glob("../testdata/containers/*.log")
	var want []string
	for _, l := range logs {
		b, err := os.ReadFile(l)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(l)), b, 0o644); err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			// CRI: time stream tag message
			if f := strings.SplitN(line, " ", 4); len(f) == 4 {
				want = append(want, f[3])
			}
		}
	}
	drain := filepath.Join(dir, "syslogdrain")
	build := exec.Command("go", "build", "-o", drain, "./internal/cmd/syslogdrain")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
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
	engine := func(logName string) (*exec.Cmd, string) {
		logPath := filepath.Join(dir, logName)
		f, err := os.Create(logPath)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		cmd := exec.Command(bin, "-e", soPath, "-c", conf)
		cmd.Stdout, cmd.Stderr = f, f
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill() })
		return cmd, logPath
	}
	waitLog := func(path, what string) {
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			if b, _ := os.ReadFile(path); bytes.Contains(b, []byte(what)) {
				return
			}
			if time.Now().After(deadline) {
				b, _ := os.ReadFile(path)
				t.Fatalf("no %q in %s:\n%s", what, path, b)
			}
		}
	}

	first, firstLog := engine("engine-1.txt")
	waitLog(firstLog, "kept for retry")
	_ = first.Process.Signal(syscall.SIGTERM)
	_ = first.Wait()

	rx := exec.Command(drain, "-tcp", "-addr", addr, "-print", "-expect", fmt.Sprint(len(want)), "-timeout", "60s")
	rxOut, _ := rx.StdoutPipe()
	if err := rx.Start(); err != nil {
		t.Fatal(err)
	}
	defer rx.Process.Kill()
	second, secondLog := engine("engine-2.txt")
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
