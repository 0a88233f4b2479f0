package hosttest

import (
	"bufio"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The fixture chunks through the real .so (its own Go runtime, gRPC and Cloud Logging
// client) into fakelogging, a LoggingServiceV2 on loopback in another process, alongside a
// syslog instance: the fan-out a DaemonSet runs, each output counted on its own.
func TestStackdriverThroughTheSO(t *testing.T) {
	files := fixtures(t, "kube-merged")
	dir := t.TempDir()
	fake := goBuild(t, "./internal/cmd/fakelogging", dir)
	srv := exec.Command(fake, "-expect", "206", "-timeout", "60s")
	stdout, _ := srv.StdoutPipe()
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Process.Kill()
	lines := bufio.NewScanner(stdout)
	lines.Scan()
	addr := strings.TrimPrefix(lines.Text(), "listening ")
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
