package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestEngineLogRotatedAsTheAgentStops: the kubelet rotates a container's log while the agent
// is stopping. Fluent Bit stops reading as its shutdown begins and, with a destination that
// does not read (Papertrail stalled), waits out its grace; tail sees the rotation meanwhile,
// adds the new file and, at exit, deletes the rotated file's row although it had not read it
// to its end. The next agent, started through trailstack-launch as the image starts it, must
// deliver every line: the launcher's trigger kept the deleted row, and the unread rest is
// handed to tail. Runs with FLUENT_BIT_BIN.
func TestEngineLogRotatedAsTheAgentStops(t *testing.T) {
	bin := fluentBit(t)
	dir := t.TempDir()
	launch := goBuild(t, "./launch", dir)
	logDir := filepath.Join(dir, "pods", "shop_app-1_uid", "app")
	containers := filepath.Join(dir, "containers")
	state := filepath.Join(dir, "state")
	for _, d := range []string{logDir, containers, state} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	log := filepath.Join(logDir, "0.log")
	if err := os.WriteFile(log, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(log, filepath.Join(containers, "app-1_shop_app-"+strings.Repeat("ab", 32)+".log")); err != nil {
		t.Fatal(err)
	}

	// Papertrail: accepts, reads nothing until released.
	release := make(chan struct{})
	got, addr := syslogCounter(t, release)

	conf := filepath.Join(dir, "fluent-bit.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`[SERVICE]
    Flush 1
    Grace 5
    Log_Level info
    storage.path %[1]s/storage
[INPUT]
    Name tail
    Tag kube.<file>
    Tag_Regex (?<file>[^/]+)$
    Path %[2]s/*.log,%[1]s/resume/*/*.log
    multiline.parser cri
    Read_from_Head On
    DB %[1]s/tail.db
    DB.locking true
    Refresh_Interval 1
    Rotate_Wait 30
    storage.type filesystem
[OUTPUT]
    Name trailstack
    Match *
    Workers 2
    Retry_Limit no_limits
    exceptions none
    sink syslog
    address tcp://%[3]s
    framing lf
    write_timeout 2s
    ack_timeout 2s
    flush_timeout 4s
`, state, containers, addr)), 0o644); err != nil {
		t.Fatal(err)
	}
	agent := func(n int) (*exec.Cmd, string) {
		out := filepath.Join(dir, fmt.Sprintf("agent-%d.txt", n))
		f, err := os.Create(out)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		cmd := exec.Command(launch, "-db", filepath.Join(state, "tail.db"), "-resume", filepath.Join(state, "resume"), "-containers", containers,
			"--", bin, "-e", soPath, "-c", conf)
		cmd.Stdout, cmd.Stderr = f, f
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill() })
		return cmd, out
	}

	// The container writes 1,000 lines a second, appending by the log's name as the runtime
	// does after a rotation (a new file under the same name).
	const lines = 9000
	written := make(chan struct{})
	go func() {
		defer close(written)
		for i := 0; i < lines; {
			var b []byte
			for k := 0; k < 100 && i < lines; k, i = k+1, i+1 {
				b = fmt.Appendf(b, "%s stdout F ledger seq=%d GET /api/v1/items 200 %060d\n", time.Now().UTC().Format(time.RFC3339Nano), i, i)
			}
			f, err := os.OpenFile(log, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
			if err != nil {
				return
			}
			f.Write(b)
			f.Close()
			time.Sleep(100 * time.Millisecond)
		}
	}()

	first, firstOut := agent(1)
	time.Sleep(4 * time.Second)
	stopped := time.Now()
	_ = first.Process.Signal(syscall.SIGTERM)
	// Fluent Bit has stopped reading and waits on Papertrail: the kubelet rotates now.
	waitFor(t, firstOut, "service will shutdown", 1)
	if err := os.Rename(log, log+"."+time.Now().UTC().Format("20060102-150405")); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait()
	t.Logf("the first agent stopped %v after SIGTERM", time.Since(stopped).Round(100*time.Millisecond))
	second, secondOut := agent(2)
	<-written
	close(release)
	for deadline := time.Now().Add(90 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		if _, lost, _ := got.of(lines); lost == 0 {
			break
		}
	}
	time.Sleep(time.Second)
	_ = second.Process.Signal(syscall.SIGTERM)
	_ = second.Wait()
	arrived, lost, twice := got.of(lines)
	b1, _ := os.ReadFile(firstOut)
	b2, _ := os.ReadFile(secondOut)
	handed := ""
	for _, l := range strings.Split(string(b2), "\n") {
		if strings.Contains(l, "trailstack-launch") {
			handed += l + "\n"
		}
	}
	t.Logf("%d of %d lines arrived, %d lost, %d twice; the launcher:\n%s", arrived, lines, lost, twice, handed)
	if !bytes.Contains(b1, []byte("rotation")) {
		t.Logf("the first agent did not see the rotation (its row stays, and the launcher's usual path hands the rest):\n%s", tailLines(b1, 20))
	}
	if lost != 0 {
		t.Errorf("%d lines lost\nfirst agent:\n%s\nsecond agent:\n%s", lost, tailLines(b1, 30), tailLines(b2, 30))
	}
}
