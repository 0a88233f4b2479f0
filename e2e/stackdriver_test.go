package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/trailstack/trailstack/testkit/fixture"
)

// The fixture chunks through the real .so (its own Go runtime, gRPC and Cloud Logging
// client) into fakelogging, a LoggingServiceV2 on loopback in another process, alongside a
// syslog instance: the fan-out a DaemonSet runs, each output counted on its own.
func TestHostStackdriverFanOut(t *testing.T) {
	files := fixtures(t, "kube-merged")
	dir := t.TempDir()
	srv, addr, lines := startFakeLogging(t, dir, "-expect", "206")
	test := filepath.Join(dir, "test-out")
	r := host(t, append([]string{"-t", "2", soPath,
		"-i", "-o", "sink=stackdriver", "-o", "endpoint=" + addr, "-o", "endpoint_plaintext=on",
		"-o", "project_id=blog-prod", "-o", "cluster_name=blog", "-o", "cluster_location=europe-west1",
		"-i", "-o", "sink=test", "-o", "test_out=" + test, "--"}, files...)...)
	if r.code != 0 {
		t.Fatalf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	lines.Scan()
	if got := lines.Text(); got != "received 206 entries in 3 requests" {
		t.Fatalf("fakelogging: %q", got)
	}
	if err := srv.Wait(); err != nil {
		t.Fatal(err)
	}
	sameLines(t, "the other output", arrived(t, test), expected(t, files))
	if !strings.Contains(r.stderr, fmt.Sprintf("[output:trailstack:trailstack.0] exited after 3 flushes: %d records delivered", 206)) {
		t.Errorf("log:\n%s", r.stderr)
	}
}

// In the real engine, one entry that Cloud Logging refuses (in a request it then refuses as a
// whole) costs that entry only: every other line of the fixture logs arrives, the flush
// answers OK, and the engine's log names the refused entry.
func TestEngineOneRefusedEntry(t *testing.T) {
	bin := fluentBit(t)
	dir := t.TempDir()
	copyLogs(t, filepath.Join(fixture.ContainerLogs(), "*.log"), dir)
	want := len(expected(t, fixtures(t, "kube-raw")))
	_, addr, lines := startFakeLogging(t, dir, "-expect", fmt.Sprint(want-1), "-refuse", "héllo")
	conf := tailConf(t, dir, nil, []string{"Buffer_Max_Size 512k"},
		[]string{"Workers 1", "Retry_Limit no_limits", "sink stackdriver", "endpoint " + addr, "endpoint_plaintext on",
			"project_id blog-prod", "cluster_name blog", "cluster_location europe-west1"})
	t.Setenv("NODE_NAME", "node-1")
	logPath := filepath.Join(dir, "engine-output.txt")
	cmd := startEngine(t, bin, conf, logPath)
	lines.Scan()
	if got, wantLine := lines.Text(), fmt.Sprintf("received %d entries in ", want-1); !strings.HasPrefix(got, wantLine) {
		t.Fatalf("fakelogging: %q, want %q...", got, wantLine)
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	_ = cmd.Wait()
	engineLog, _ := os.ReadFile(logPath)
	for _, w := range []string{"Cloud Logging refused 1 of 1 entries", "héllo", fmt.Sprintf("%d records delivered, 0 retries, 0 chunks dropped, 1 records refused", want-1)} {
		if !bytes.Contains(engineLog, []byte(w)) {
			t.Errorf("the engine's log lacks %q:\n%s", w, engineLog)
		}
	}
	t.Logf("%d of %d lines written, the refused one named in the log", want-1, want)
}

// startFakeLogging runs fakelogging (a Cloud Logging stand-in in another process) with args,
// and returns it, its address, and its output after the "listening" line.
func startFakeLogging(t *testing.T, dir string, args ...string) (*exec.Cmd, string, *bufio.Scanner) {
	t.Helper()
	srv := exec.Command(goBuild(t, "./tools/fakelogging", dir), append(args, "-timeout", "60s")...)
	stdout, _ := srv.StdoutPipe()
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Process.Kill() })
	lines := bufio.NewScanner(stdout)
	lines.Scan()
	return srv, strings.TrimPrefix(lines.Text(), "listening "), lines
}
