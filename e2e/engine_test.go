package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/trailstack/trailstack/testkit/fixture"
)

// TestEngineTailsAndHotReloads runs the .so inside a real fluent-bit (FLUENT_BIT_BIN) that tails the
// fixture container logs with the cri multiline parser, and checks that every record arrives
// once, with the time and log line that Fluent Bit's own capture recorded (kube-raw). Then it
// hot-reloads the engine (SIGHUP): the instance exits, a new one starts in the same process,
// and tail (without a DB) reads the files again, so every record arrives a second time.
func TestEngineTailsAndHotReloads(t *testing.T) {
	bin := fluentBit(t)
	dir := t.TempDir()
	copyLogs(t, filepath.Join(fixture.ContainerLogs(), "*.log"), dir)
	out := filepath.Join(dir, "arrived")
	conf := tailConf(t, dir, []string{"Hot_Reload On"}, []string{"Buffer_Max_Size 512k"},
		[]string{"Workers 2", "sink test", "test_out " + out, "metrics_listen 127.0.0.1:0"})
	logPath := filepath.Join(dir, "engine-output.txt")
	cmd := startEngine(t, bin, conf, logPath)
	want := expected(t, fixtures(t, "kube-raw"))
	waitFor(t, out, "\n", len(want))
	// The metrics endpoint counts what this instance delivered...
	waitFor(t, logPath, "metrics on http://", 1)
	b, _ := os.ReadFile(logPath)
	url := regexp.MustCompile(`metrics on (http://\S+)`).FindSubmatch(b)[1]
	delivered := fmt.Sprintf(`trailstack_records_delivered_total{instance="trailstack.0",sink="test"} %d`, len(want))
	waitScrape(t, string(url), delivered)
	_ = cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, logPath, "initialised: sink=", 2)
	waitFor(t, out, "\n", 2*len(want))
	// ...and after the hot reload it is still up, with only the new instance's series: the
	// old one's left with it (its counter would read twice as much).
	waitScrape(t, string(url), delivered)
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

// waitScrape polls a metrics endpoint until it shows line.
func waitScrape(t *testing.T, url, line string) {
	t.Helper()
	var last string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		resp, err := http.Get(url)
		if err != nil {
			last = err.Error()
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if last = string(b); strings.Contains(last, line+"\n") {
			return
		}
	}
	t.Fatalf("%s never showed %q; last:\n%s", url, line, last)
}
