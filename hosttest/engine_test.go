package hosttest

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/trailstack/trailstack/internal/fixture"
)

// TestRealFluentBit runs the .so inside a real fluent-bit (FLUENT_BIT_BIN) that tails the
// fixture container logs with the cri multiline parser, and checks that every record arrives
// once, with the time and log line that Fluent Bit's own capture recorded (kube-raw). Then it
// hot-reloads the engine (SIGHUP): the instance exits, a new one starts in the same process,
// and tail (without a DB) reads the files again, so every record arrives a second time.
func TestRealFluentBit(t *testing.T) {
	bin := fluentBit(t)
	dir := t.TempDir()
	copyLogs(t, filepath.Join(fixture.Dir(), "..", "container-logs", "*.log"), dir)
	out := filepath.Join(dir, "arrived")
	conf := filepath.Join(dir, "fluent-bit.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`[SERVICE]
    Flush        1
    Grace        5
    Log_Level    info
    Hot_Reload   On
[INPUT]
    Name             tail
    Tag              kube.*
    Path             %[1]s/*.log
    multiline.parser cri
    Read_from_Head   On
    Buffer_Max_Size  512k
[OUTPUT]
    Name     trailstack
    Match    *
    Workers  2
    sink     test
    test_out %[2]s
`, dir, out)), 0o644); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "engine-output.txt")
	cmd := startEngine(t, bin, conf, logPath)
	want := expected(t, fixtures(t, "kube-raw"))
	waitFor(t, out, "\n", len(want))
	_ = cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, logPath, "initialised: sink=", 2)
	waitFor(t, out, "\n", 2*len(want))
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Errorf("fluent-bit exited with %v", err)
	}
	engineLog, _ := os.ReadFile(logPath)
	if n := bytes.Count(engineLog, []byte(fmt.Sprintf("exited after 3 flushes: %d records delivered", len(want)))); n != 2 {
		t.Errorf("%d instances exited through FLBPluginExitCtx with every record, want 2:\n%s", n, engineLog)
	}
	// The tail tag holds this test's directory, so compare time and log line only.
	strip := func(lines []string) []string {
		var s []string
		for _, l := range lines {
			s = append(s, l[strings.IndexByte(l, '\t'):])
		}
		return s
	}
	sameLines(t, "records from the real engine", strip(arrived(t, out)), strip(times(want, 2)))
}
