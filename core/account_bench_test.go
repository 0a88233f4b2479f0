package core

import (
	"bytes"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkAccount is the account's cost per line: flushes of 2,000 records confirmed, then
// a pass that places them in their file and walks it. The log's lines are about 120 bytes.
func BenchmarkAccount(b *testing.B) {
	const n = 200000
	start := time.Unix(1796000000, 0)
	lines := make([]string, n)
	for i := range lines {
		lines[i] = "F GET /api/v1/items 200 0000000000000000000000000000000000000000000000000000000000000000000000"
	}
	log, offs, times := criLog(start.Add(time.Second), lines...)
	dir, tag, _ := accountDir(&testing.T{}, log)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		a := NewAccountant(AccountConfig{Links: filepath.Join(dir, "containers"), Storage: filepath.Join(dir, "storage"),
			TagPrefix: "kube.var.log.containers.", MaxLine: 1 << 20, Grace: time.Minute},
			func() time.Time { return start }, NewLogger("bench", &bytes.Buffer{}), nil)
		for k := 0; k < n; k += 2000 {
			a.Confirmed(tag, offs[k:k+2000], times[k:k+2000], 2000)
		}
		a.Pass()
		if total(a.Lost) != 0 {
			b.Fatal(a.Lost)
		}
		a.Close()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/line")
}
