package core

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// criLog builds a CRI log of the given lines ("F text" or "P text", stdout unless the text
// starts with "err:") with times one microsecond apart from t0; it returns the log and each
// line's start offset and time.
func criLog(t0 time.Time, lines ...string) (log []byte, offs, times []int64) {
	for i, l := range lines {
		ts := t0.Add(time.Duration(i) * time.Microsecond)
		stream := "stdout"
		flag, text, _ := strings.Cut(l, " ")
		if strings.HasPrefix(text, "err:") {
			stream = "stderr"
		}
		offs = append(offs, int64(len(log)))
		times = append(times, ts.UnixNano())
		log = fmt.Appendf(log, "%s %s %s %s\n", ts.UTC().Format(time.RFC3339Nano), stream, flag, text)
	}
	return log, offs, times
}

func TestWalkRecordsJoinsPartialsPerStream(t *testing.T) {
	log, offs, _ := criLog(time.Unix(1796000000, 0), "F a", "P b1", "F err:c", "P b2", "F b3", "F "+strings.Repeat("x", 100))
	type rec struct {
		last int64
		long bool
	}
	var got []rec
	walkRecords(newLineReader(), bytes.NewReader(append(log, "2026-12-06T00:00:00Z stdout F not ended"...)), 0, 90, func(w walked) bool {
		got = append(got, rec{w.last, w.long})
		return true
	})
	want := []rec{{offs[0], false}, {offs[2], false}, {offs[4], false}, {offs[5], true}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("records %v, want %v", got, want)
	}
}

// accountDir is a kubelet's layout: a link in containers/ to pods/<pod>/app/0.log.
func accountDir(t *testing.T, log []byte) (dir, tag, file string) {
	dir = t.TempDir()
	podDir := filepath.Join(dir, "pods", "shop_app-1_uid", "app")
	for _, d := range []string{podDir, filepath.Join(dir, "containers"), filepath.Join(dir, "storage")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	file = filepath.Join(podDir, "0.log")
	if err := os.WriteFile(file, log, 0o644); err != nil {
		t.Fatal(err)
	}
	name := "app-1_shop_app-0123.log"
	if err := os.Symlink(file, filepath.Join(dir, "containers", name)); err != nil {
		t.Fatal(err)
	}
	return dir, "kube.var.log.containers." + name, file
}

func TestAccountantCountsOnlyWhatNoChunkHolds(t *testing.T) {
	start := time.Unix(1796000000, 0)
	log, offs, times := criLog(start.Add(time.Second), "F 0", "F 1", "F 2", "F 3", "F 4", "F 5")
	dir, tag, _ := accountDir(t, log)
	now := start
	clock := Clock(func() time.Time { return now })
	var logged bytes.Buffer
	a := NewAccountant(AccountConfig{Links: filepath.Join(dir, "containers"), Storage: filepath.Join(dir, "storage"),
		TagPrefix: "kube.var.log.containers.", MaxLine: 1 << 20, RotateWait: 5 * time.Second, Grace: 30 * time.Second},
		clock, NewLogger("test", &logged), nil)
	defer a.Close()

	// Lines 0, 1 and 5 confirmed, in two flushes out of order; 2 to 4 not.
	now = now.Add(2 * time.Second)
	a.Confirmed(tag, offs[5:6], times[5:6], 1)
	a.Confirmed(tag, offs[0:2], times[0:2], 1)
	a.Pass()
	if n := total(a.Lost); n != 0 {
		t.Fatalf("counted %v within the grace", a.Lost)
	}
	// Line 2 arrives late; the rest outlive the grace and no chunk holds them.
	now = now.Add(10 * time.Second)
	a.Confirmed(tag, offs[2:3], times[2:3], 1)
	a.Pass()
	// (Interval 0: the walk goes as far as was confirmed at once.)
	now = now.Add(31 * time.Second)
	a.Pass()
	if a.Lost[CauseNotBuffered] != 2 || total(a.Lost) != 2 {
		t.Fatalf("lost %v, want 2 not_buffered", a.Lost)
	}
	want := fmt.Sprintf("lost 2 lines of pod shop/app-1 container app (%s bytes %d-%d)", filepath.Join(dir, "pods", "shop_app-1_uid", "app", "0.log"), offs[3], offs[5])
	if !strings.Contains(logged.String(), want) {
		t.Errorf("log %q lacks %q", logged.String(), want)
	}
	a.Pass()
	if total(a.Lost) != 2 {
		t.Fatalf("counted again: %v", a.Lost)
	}
}

func TestAccountantStartsAtTheFirstConfirmedLineOfAnOlderFile(t *testing.T) {
	start := time.Unix(1796000000, 0)
	// The file was written before this output started: lines before the first it confirms
	// were the previous agent's.
	log, offs, times := criLog(start.Add(-time.Minute), "F 0", "F 1", "F 2", "F 3")
	dir, tag, _ := accountDir(t, log)
	now := start
	a := NewAccountant(AccountConfig{Links: filepath.Join(dir, "containers"), Storage: filepath.Join(dir, "storage"),
		TagPrefix: "kube.var.log.containers.", MaxLine: 1 << 20, RotateWait: 5 * time.Second, Grace: time.Second},
		func() time.Time { return now }, NewLogger("test", &bytes.Buffer{}), nil)
	defer a.Close()
	a.Confirmed(tag, offs[2:4], times[2:4], 1)
	a.Pass()
	now = now.Add(time.Minute)
	a.Pass()
	if total(a.Lost) != 0 {
		t.Fatalf("counted %v before the first line this output confirmed", a.Lost)
	}
}

func total(m map[string]int64) (n int64) {
	for _, v := range m {
		n += v
	}
	return n
}

func TestUTCTimeAsTimeParse(t *testing.T) {
	for _, v := range []string{"2026-12-06T13:00:00Z", "2026-12-06T13:00:00.123456789Z", "2024-02-29T23:59:59.5Z",
		"1970-01-01T00:00:00.000000001Z", "2000-03-01T00:00:00.1Z", "2100-12-31T12:34:56.000100Z"} {
		want, err := time.Parse(time.RFC3339Nano, v)
		got, ok := utcTime([]byte(v))
		if err != nil || !ok || got != want.UnixNano() {
			t.Errorf("%s: %d %v, want %d", v, got, ok, want.UnixNano())
		}
	}
	for _, v := range []string{"2026-12-06T13:00:00+01:00", "2026-13-06T13:00:00Z", "2026-12-06T13:00:00.Z", "garbage"} {
		if _, ok := utcTime([]byte(v)); ok {
			t.Errorf("%s read", v)
		}
	}
}

// A file the kubelet deletes while lines of it are missing: they cannot be repaired, and
// are counted lost once their grace ends rather than forgotten with the file.
func TestAccountantCountsTheMissingLinesOfADeletedFile(t *testing.T) {
	start := time.Unix(1796000000, 0)
	log, offs, times := criLog(start.Add(time.Second), "F 0", "F 1", "F 2", "F 3")
	dir, tag, file := accountDir(t, log)
	now := start
	a := repairingAccountant(dir, &now)
	defer a.Close()
	now = now.Add(2 * time.Second)
	a.Confirmed(tag, []int64{offs[0], offs[3]}, []int64{times[0], times[3]}, 2)
	a.Pass()
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	now = now.Add(31 * time.Second)
	a.Pass()
	if a.Lost[CauseNotBuffered] != 2 || a.Repairing != 0 {
		t.Fatalf("lost %v, repairing %d: want the 2 missing lines lost", a.Lost, a.Repairing)
	}
}

// A rotated file the kubelet compresses while lines of it are missing: they are read back
// from the .gz.
func TestAccountantRepairsFromACompressedFile(t *testing.T) {
	start := time.Unix(1796000000, 0)
	log, offs, times := criLog(start.Add(time.Second), "F 0", "F 1", "F 2", "F 3")
	dir, tag, file := accountDir(t, log)
	now := start
	a := repairingAccountant(dir, &now)
	defer a.Close()
	now = now.Add(2 * time.Second)
	a.Confirmed(tag, []int64{offs[0], offs[3]}, []int64{times[0], times[3]}, 2)
	a.Pass()
	// The kubelet's rotation: the file renamed, then compressed and the plain one removed.
	rotated := rotate(t, file)
	writeGz(t, rotated+".gz", log)
	a.Pass()
	if err := os.Remove(rotated); err != nil {
		t.Fatal(err)
	}
	now = now.Add(31 * time.Second)
	a.Pass()
	got, _ := os.ReadFile(filepath.Join(dir, "repair", "app-1_shop_app-0123.log"))
	if want := log[offs[1]:offs[3]]; a.Repairing != 2 || total(a.Lost) != 0 || !bytes.Equal(got, want) {
		t.Fatalf("repairing %d, lost %v, repair file %q, want %q", a.Repairing, a.Lost, got, want)
	}
}

// repairingAccountant accounts for dir's logs (accountDir) with a 30 s grace and repairs
// into dir/repair, on the clock *now.
func repairingAccountant(dir string, now *time.Time) *Accountant {
	return NewAccountant(AccountConfig{Links: filepath.Join(dir, "containers"), Storage: filepath.Join(dir, "storage"),
		TagPrefix: "kube.var.log.containers.", MaxLine: 1 << 20, Grace: 30 * time.Second, RepairDir: filepath.Join(dir, "repair"), RepairRate: 1000},
		func() time.Time { return *now }, NewLogger("test", &bytes.Buffer{}), nil)
}

// compress is the kubelet's second step of a rotation: the rotated file gzipped beside it,
// the plain one removed. It returns the .gz's path.
func compress(t *testing.T, rotated string, log []byte) string {
	t.Helper()
	writeGz(t, rotated+".gz", log)
	if err := os.Remove(rotated); err != nil {
		t.Fatal(err)
	}
	return rotated + ".gz"
}

// writeGz writes data gzipped to path.
func writeGz(tb testing.TB, path string, data []byte) {
	tb.Helper()
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(data)
	zw.Close()
	if err := os.WriteFile(path, gz.Bytes(), 0o644); err != nil {
		tb.Fatal(err)
	}
}

// rotate renames the log as the kubelet does and opens a new, empty one.
func rotate(t *testing.T, file string) string {
	t.Helper()
	rotated := file + ".20261206-000000"
	if err := os.Rename(file, rotated); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return rotated
}

// A rotated file the kubelet compresses before the walk reached its end (nothing was
// confirmed past its first line: the destination went down): the rest is walked through the
// .gz, a flush confirmed late is found there, and the lines nothing confirmed are repaired.
func TestAccountantWalksARotatedFileCompressedBeforeTheWalkReachedIt(t *testing.T) {
	start := time.Unix(1796000000, 0)
	log, offs, times := criLog(start.Add(time.Second), "F 0", "F 1", "F 2", "F 3", "F 4", "F 5")
	dir, tag, file := accountDir(t, log)
	now := start.Add(2 * time.Second)
	os.Chtimes(file, now, now) // its last write, on the test's clock
	a := repairingAccountant(dir, &now)
	defer a.Close()
	a.Confirmed(tag, offs[:1], times[:1], 1)
	a.Pass()
	compress(t, rotate(t, file), log)
	// A flush of line 2, in flight at the rotation, is confirmed after it.
	a.Confirmed(tag, offs[2:3], times[2:3], 1)
	a.Pass()
	if a.Repairing != 0 || total(a.Lost) != 0 {
		t.Fatalf("repairing %d, lost %v within the grace", a.Repairing, a.Lost)
	}
	now = now.Add(31 * time.Second)
	a.Pass()
	got, _ := os.ReadFile(filepath.Join(dir, "repair", "app-1_shop_app-0123.log"))
	want := append(slices.Clone(log[offs[1]:offs[2]]), log[offs[3]:]...)
	if a.Repairing != 4 || total(a.Lost) != 0 || !bytes.Equal(got, want) {
		t.Fatalf("repairing %d, lost %v, repair file %q, want %q", a.Repairing, a.Lost, got, want)
	}
	a.Pass()
	if a.Repairing != 4 || len(a.streams[tag].files) != 0 {
		t.Fatalf("after the repair: repairing %d, files %v", a.Repairing, a.streams[tag].files)
	}
}

// The buffer cap while the destination is down from the output's start, across a rotation
// and compression: nothing of the file was confirmed before the kubelet compressed it. The
// chunk the engine evicted is repaired from the .gz; the chunk delivered after is not.
func TestAccountantRepairsAnEvictedChunkOfAFileCompressedBeforeAnythingWasConfirmed(t *testing.T) {
	start := time.Unix(1796000000, 0)
	// Whole seconds: a chunk's records carry integer times.
	var lines []string
	for i := 0; i < 6; i++ {
		lines = append(lines, fmt.Sprintf("F %d", i))
	}
	var log []byte
	var offs, times []int64
	for i, l := range lines {
		ts := start.Add(time.Duration(i+1) * time.Second)
		offs, times = append(offs, int64(len(log))), append(times, ts.UnixNano())
		log = fmt.Appendf(log, "%s stdout %s\n", ts.UTC().Format(time.RFC3339Nano), l)
	}
	dir, tag, file := accountDir(t, log)
	now := start
	a := repairingAccountant(dir, &now)
	defer a.Close()
	now = now.Add(7 * time.Second)
	os.Chtimes(file, now, now)
	evicted := filepath.Join(dir, "storage", "tail.0", "1-1.flb")
	delivered := filepath.Join(dir, "storage", "tail.0", "1-2.flb")
	chunkFile(t, evicted, tag, times[:3], offs[:3])
	chunkFile(t, delivered, tag, times[3:], offs[3:])
	a.Pass()
	compress(t, rotate(t, file), log)
	os.Remove(evicted)
	a.Pass()
	now = now.Add(5 * time.Second)
	a.Confirmed(tag, offs[3:], times[3:], 1)
	os.Remove(delivered)
	a.Pass()
	now = now.Add(31 * time.Second)
	a.Pass()
	got, _ := os.ReadFile(filepath.Join(dir, "repair", "app-1_shop_app-0123.log"))
	if a.Repairing != 3 || total(a.Lost) != 0 || !bytes.Equal(got, log[:offs[3]]) {
		t.Fatalf("repairing %d, lost %v, repair file %q, want %q", a.Repairing, a.Lost, got, log[:offs[3]])
	}
}
