package core

import (
	"bytes"
	"os"
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

// BenchmarkAccountCompressed is what a rotated file the kubelet compressed before the walk
// reached its end costs: 10 MiB of lines (GKE's containerLogMaxSize), all but the first
// confirmed only after the kubelet compressed it, walked through the .gz from the first line
// and each record then found among its gaps.
func BenchmarkAccountCompressed(b *testing.B) {
	start := time.Unix(1796000000, 0)
	var lines []string
	for i := 0; i < 10<<20/128; i++ {
		lines = append(lines, "F GET /api/v1/items 200 0000000000000000000000000000000000000000000000000000000000000000000000")
	}
	log, offs, times := criLog(start.Add(time.Second), lines...)
	t := &testing.T{}
	dir, tag, file := accountDir(t, log)
	writeGz(b, file+".20261206-000000.gz", log)
	b.SetBytes(int64(len(log)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		a := NewAccountant(AccountConfig{Links: filepath.Join(dir, "containers"), Storage: filepath.Join(dir, "storage"),
			TagPrefix: "kube.var.log.containers.", MaxLine: 1 << 20, Grace: time.Minute},
			func() time.Time { return start }, NewLogger("bench", &bytes.Buffer{}), nil)
		a.Confirmed(tag, offs[:1], times[:1], 1)
		a.Pass()
		// Rotated and compressed between two passes, the rest confirmed after.
		if err := os.Rename(file, filepath.Join(dir, "aside")); err != nil {
			b.Fatal(err)
		}
		a.Confirmed(tag, offs[1:], times[1:], len(offs)-1)
		b.StartTimer()
		a.Pass()
		b.StopTimer()
		a.Pass() // drops the file, its gaps all found confirmed
		if total(a.Lost) != 0 || len(a.streams[tag].files) != 0 {
			b.Fatalf("lost %v, files %v", a.Lost, a.streams[tag].files)
		}
		a.Close()
		os.Rename(filepath.Join(dir, "aside"), file)
	}
}
