package e2e

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/trailstack/trailstack/testkit/fixture"
	"github.com/trailstack/trailstack/testkit/sample"
)

// TestEngineDemo runs `make demo` as the README gives it, with the real Fluent Bit named by
// FLUENT_BIT_BIN: the shipped configuration tails the sample.
func TestEngineDemo(t *testing.T) {
	out := runDemo(t, fluentBit(t))
	checkDemo(t, out, true)
}

// TestHostDemo runs `make demo` where no fluent-bit is found: the C host flushes the chunks
// Fluent Bit made of the same sample.
func TestHostDemo(t *testing.T) {
	out := runDemo(t, "")
	checkDemo(t, out, false)
}

// runDemo runs make demo in the repository with engine as FLUENT_BIT_BIN ("": none, and
// none on PATH either) and returns what it printed. A demo that exits non-zero fails.
func runDemo(t *testing.T, engine string) string {
	t.Helper()
	var env []string
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "FLUENT_BIT_BIN", "MAKEFLAGS", "MAKELEVEL", "MFLAGS":
			continue
		case "PATH":
			var dirs []string
			for _, d := range filepath.SplitList(v) {
				if _, err := os.Stat(filepath.Join(d, "fluent-bit")); err != nil || engine != "" {
					dirs = append(dirs, d)
				}
			}
			kv = "PATH=" + strings.Join(dirs, string(filepath.ListSeparator))
		}
		env = append(env, kv)
	}
	if engine != "" {
		env = append(env, "FLUENT_BIT_BIN="+engine)
	}
	cmd := exec.Command("make", "-s", "demo")
	cmd.Dir = fixture.Root()
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make demo: %v\n%s", err, tail(string(out), 60))
	}
	return string(out)
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

var (
	syslogPrinted  = regexp.MustCompile(`^  <(\d+)>1 (\S+) `)
	loggingPrinted = regexp.MustCompile(`^  (\d{4}-\d\d-\d\dT\S+) (\w+) +k8s_container `)
	summaryRow     = regexp.MustCompile(`^  (Papertrail|Cloud Logging) +(\d+) +(\d+) +(\d+) +(\d+) +(\d+) +(\d+) +(\d+)$`)
	stoppedAfter   = regexp.MustCompile(`Fluent Bit stopped (\d+) ms after the last line arrived`)
	// A line of Fluent Bit's log (the plugin's lines are in it): the plugin's warnings and
	// errors, and anyone's errors.
	pluginWarning = regexp.MustCompile(`^  \[\d{4}/\d\d/\d\d [\d:.]+\] (\[ *(warn|error)\] \[output:trailstack|\[error\])`)
)

// syslogSeverity names an RFC 5424 severity as Cloud Logging does.
var syslogSeverity = [8]string{"EMERGENCY", "ALERT", "CRITICAL", "ERROR", "WARNING", "NOTICE", "INFO", "DEBUG"}

// checkDemo checks what the demo printed against the sample itself, apart from the
// stand-ins' own counts: every line at both destinations once (the messages printed, by
// their time stamps), the same severity at both, the summary's figures, no warning or error
// of the plugin, the engine's stop, and the README's description of the output.
func checkDemo(t *testing.T, out string, engine bool) {
	t.Helper()
	smp, err := sample.Load(fixture.ContainerLogs())
	if err != nil {
		t.Fatal(err)
	}
	// What the sample should become: a message for each line, but a stack trace's lines
	// (its first, then the "\tat " lines after it on the same stream) make one.
	starts := map[int64]bool{}
	traces := 0
	for _, l := range smp.Lines {
		if strings.HasPrefix(l.Text, "\tat ") {
			continue
		}
		if strings.HasPrefix(l.Text, "Exception in thread") {
			traces++
		}
		starts[l.Time.UnixMicro()] = true
	}
	if traces == 0 || len(starts) >= len(smp.Lines) {
		t.Fatalf("the sample has %d stack traces, %d messages of %d lines: not the sample this test knows", traces, len(starts), len(smp.Lines))
	}

	if !strings.Contains(out, "\n== the plugin logged:\n") {
		t.Fatal("the demo does not show the plugin's log")
	}
	syslogSev := map[int64]string{}
	loggingSev := map[int64]string{}
	var rows []string
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if pluginWarning.MatchString(line) {
			t.Errorf("the plugin logged a warning or an error: %s", line)
		}
		// Everything the demo writes is in its temporary directory: a user's machine has
		// no /var/lib/trailstack, or one of its own.
		if strings.Contains(line, "/var/lib/trailstack") {
			t.Errorf("the demo uses the node's state directory: %s", line)
		}
		if m := syslogPrinted.FindStringSubmatch(line); m != nil {
			pri, _ := strconv.Atoi(m[1])
			seen(t, "Papertrail", syslogSev, m[2], syslogSeverity[pri%8])
			continue
		}
		if m := loggingPrinted.FindStringSubmatch(line); m != nil {
			seen(t, "Cloud Logging", loggingSev, m[1], m[2])
			continue
		}
		if summaryRow.MatchString(line) {
			rows = append(rows, line)
		}
	}
	for k := range starts {
		at := time.UnixMicro(k).UTC().Format(time.RFC3339Nano)
		ps, inP := syslogSev[k]
		ls, inL := loggingSev[k]
		switch {
		case !inP || !inL:
			t.Errorf("the line of %s: at Papertrail %v, at Cloud Logging %v", at, inP, inL)
		case ps != ls:
			t.Errorf("the line of %s: severity %s at Papertrail, %s at Cloud Logging", at, ps, ls)
		}
	}
	for k := range syslogSev {
		if !starts[k] {
			t.Errorf("Papertrail got a message no sample line starts (%v)", time.UnixMicro(k).UTC())
		}
	}
	for k := range loggingSev {
		if !starts[k] {
			t.Errorf("Cloud Logging got an entry no sample line starts (%v)", time.UnixMicro(k).UTC())
		}
	}

	// The summary: lines, delivered, received, messages, traces joined, lost, twice.
	if len(rows) != 2 {
		t.Fatalf("the summary has %d rows of figures, want 2:\n%s", len(rows), tail(out, 12))
	}
	n := len(smp.Lines)
	want := []int{n, n, n, len(starts), traces, 0, 0}
	for _, row := range rows {
		m := summaryRow.FindStringSubmatch(row)
		for i, w := range want {
			if got, _ := strconv.Atoi(m[i+2]); got != w {
				t.Errorf("summary, %s: column %d is %d, want %d (%s)", m[1], i+1, got, w, row)
			}
		}
	}

	if engine {
		m := stoppedAfter.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("the demo does not say when Fluent Bit stopped:\n%s", tail(out, 6))
		}
		// Fluent Bit checks for pending tasks once a second after SIGTERM.
		if ms, _ := strconv.Atoi(m[1]); ms > 2500 {
			t.Errorf("Fluent Bit stopped %d ms after the last line arrived, want 2.5 s at most", ms)
		}
	}
	checkREADMEDemo(t, out)
}

// seen records that dest printed a message of the time stamp at with severity sev, by its
// microsecond (which both destinations carry); a second one of the same fails the test.
func seen(t *testing.T, dest string, sev map[int64]string, at, severity string) {
	t.Helper()
	ts, err := time.Parse(time.RFC3339Nano, at)
	if err != nil {
		t.Fatalf("%s time stamp: %v", dest, err)
	}
	k := ts.UnixMicro()
	if _, twice := sev[k]; twice {
		t.Errorf("%s got the message of %s twice", dest, at)
	}
	sev[k] = severity
}

// checkREADMEDemo holds the README to what the demo prints: each line of the example
// after "make demo ends with" begins a line of the output.
func checkREADMEDemo(t *testing.T, out string) {
	t.Helper()
	readme, err := os.ReadFile(filepath.Join(fixture.Root(), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(readme), "`make demo` ends with")
	if !ok {
		t.Fatal("README.md: no example of the demo's summary (\"`make demo` ends with\")")
	}
	_, rest, _ = strings.Cut(rest, "```\n")
	example, _, ok := strings.Cut(rest, "```")
	if !ok || strings.TrimSpace(example) == "" {
		t.Fatal("README.md: the demo's example is not a code block")
	}
	for _, want := range strings.Split(strings.TrimSuffix(example, "\n"), "\n") {
		found := false
		for _, line := range strings.Split(out, "\n") {
			if strings.HasPrefix(line, want) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("README.md's example of the demo has %q, which the demo does not print", want)
		}
	}
}
