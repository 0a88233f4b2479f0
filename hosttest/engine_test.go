package hosttest

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

// TestRealFluentBit runs the .so inside a real fluent-bit (FLUENT_BIT_BIN) that tails the
// fixture container logs with the cri multiline parser, and checks that every record arrives
// once, with the time and log line that Fluent Bit's own capture recorded (kube-raw).
func TestRealFluentBit(t *testing.T) {
	bin := os.Getenv("FLUENT_BIT_BIN")
	if bin == "" {
		t.Skip("skipped: set FLUENT_BIT_BIN to a fluent-bit binary to run the plugin in the real engine")
	}
	logs, _ := filepath.Glob("../../shared/fixtures/container-logs/*.log")
	if len(logs) == 0 {
		t.Skip("no container logs in ../shared/fixtures")
	}
	dir := t.TempDir()
	for _, l := range logs {
		b, err := os.ReadFile(l)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(l)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(dir, "arrived")
	conf := filepath.Join(dir, "fluent-bit.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`[SERVICE]
    Flush        1
    Grace        5
    Log_Level    info
    storage.path %[1]s/storage
[INPUT]
    Name             tail
    Tag              kube.*
    Path             %[1]s/*.log
    multiline.parser cri
    Read_from_Head   On
    storage.type     filesystem
[OUTPUT]
    Name     trailstack
    Match    *
    Workers  2
    sink     test
    test_out %[2]s
`, dir, out)), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-e", soPath, "-c", conf)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	want := expected(t, fixtures(t, "kube-raw"))
	deadline := time.Now().Add(60 * time.Second)
	for {
		b, _ := os.ReadFile(out)
		if bytes.Count(b, []byte("\n")) >= len(want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Errorf("fluent-bit exited with %v", err)
	}
	if !strings.Contains(stderr.String(), "exited after") {
		t.Errorf("the instance did not exit through FLBPluginExitCtx:\n%s", stderr.String())
	}
	// The tail tag holds this test's directory, so compare time and log line only.
	strip := func(lines []string) []string {
		var s []string
		for _, l := range lines {
			s = append(s, l[strings.IndexByte(l, '\t'):])
		}
		return s
	}
	sameLines(t, "records from the real engine", strip(arrived(t, out)), strip(want))
}
