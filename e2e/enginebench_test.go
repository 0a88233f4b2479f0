package e2e

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/trailstack/trailstack/testkit/fixture"
)

// The benchmark harness, small, in the real engine: each output of each record shape,
// Fluent Bit's own C outputs beside trailstack's, must get every line to its receiver,
// which counts them (the harness fails otherwise). The figures are make bench's; this keeps
// the harness and what it measures honest.
func TestEngineBenchCountsEveryLine(t *testing.T) {
	bin := fluentBit(t)
	dir := t.TempDir()
	eb := goBuild(t, "./tools/enginebench", dir)
	goBuild(t, "./tools/syslogdrain", dir)
	goBuild(t, "./tools/fakelogging", dir)
	out, err := exec.Command(eb, "-engine", bin, "-so", soPath, "-bin", dir, "-lines", "20000", "-runs", "1", "-timeout", "2m").CombinedOutput()
	if err != nil {
		t.Fatalf("enginebench: %v\n%s", err, out)
	}
	for _, shape := range fixture.Shapes {
		for _, o := range []string{"null", "c-syslog", "syslog", "c-stackdriver", "stackdriver"} {
			if !strings.Contains(string(out), "| "+shape+" | "+o+" |") {
				t.Errorf("no figure for %s to %s:\n%s", shape, o, out)
			}
		}
	}
	t.Logf("\n%s", out)
}
