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
	url := metricsURL(t, logPath)
	delivered := fmt.Sprintf(`trailstack_records_delivered_total{instance="trailstack.0",sink="test"} %d`, len(want))
	waitScrape(t, url, delivered)
	_ = cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, logPath, "initialised: sink=", 2)
	waitFor(t, out, "\n", 2*len(want))
	// ...and after the hot reload it is still up, with only the new instance's series: the
	// old one's left with it (its counter would read twice as much).
	waitScrape(t, url, delivered)
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

// metricsURL waits for the engine's log to say where the plugin's metrics are.
func metricsURL(t *testing.T, logPath string) string {
	t.Helper()
	waitFor(t, logPath, "metrics on http://", 1)
	b, _ := os.ReadFile(logPath)
	return string(regexp.MustCompile(`metrics on (http://\S+)`).FindSubmatch(b)[1])
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

// One output's trouble never stops the other: in the real engine, a syslog output whose
// address comes from the environment and does not parse, and a Cloud Logging output whose
// metadata server is not there, start not ready (Fluent Bit runs on, where a failed Init
// would have stopped it), and the output beside them delivers every line.
func TestEngineBrokenOutputBesideAWorkingOne(t *testing.T) {
	bin := fluentBit(t)
	dir := t.TempDir()
	copyLogs(t, filepath.Join(fixture.ContainerLogs(), "*.log"), dir)
	out := filepath.Join(dir, "arrived")
	conf := tailConf(t, dir, nil, []string{"Buffer_Max_Size 512k"},
		[]string{"Workers 1", "sink test", "test_out " + out, "metrics_listen 127.0.0.1:0"})
	broken := "\n[OUTPUT]\n    Name trailstack\n    Match *\n    sink syslog\n    address ${BROKEN_ADDRESS}\n" +
		"\n[OUTPUT]\n    Name trailstack\n    Match *\n    sink stackdriver\n    retention 87600h\n"
	f, err := os.OpenFile(conf, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(broken)
	f.Close()
	t.Setenv("BROKEN_ADDRESS", "not an address")
	t.Setenv("GCE_METADATA_HOST", "127.0.0.1:1") // nothing answers: no project, no cluster
	logPath := filepath.Join(dir, "engine-output.txt")
	cmd := startEngine(t, bin, conf, logPath)
	want := expected(t, fixtures(t, "kube-raw"))
	waitFor(t, out, "\n", len(want))
	url := metricsURL(t, logPath)
	waitScrape(t, url, `trailstack_output_ready{instance="trailstack.1",sink="syslog"} 0`)
	waitScrape(t, url, `trailstack_output_ready{instance="trailstack.2",sink="stackdriver"} 0`)
	waitScrape(t, url, `trailstack_output_ready{instance="trailstack.0",sink="test"} 1`)
	_ = cmd.Process.Signal(syscall.SIGTERM)
	_ = cmd.Wait()
	engineLog, _ := os.ReadFile(logPath)
	for _, w := range []string{`output not started, its records wait in Fluent Bit's buffer (fix it and restart the pod): config key "address"`,
		`output not started, its records wait in Fluent Bit's buffer (trying again every 30s): config key "project_id"`} {
		if !bytes.Contains(engineLog, []byte(w)) {
			t.Errorf("the engine's log lacks %q:\n%s", w, engineLog)
		}
	}
}
