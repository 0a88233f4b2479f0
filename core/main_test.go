package core

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test of the package ends with no goroutine of its own left running, but the metrics
// endpoint that the benchmarks open: one per process, it lives as long as the process.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/trailstack/trailstack/metrics.Listen.func1"))
}
