package core

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func idOf(tag string, data []byte) ChunkID { return chunkID(ChunkSum(tag, data), len(data)) }

func openTestLedger(t *testing.T, path string, maxAge time.Duration, maxEntries int) (*Ledger, *bytes.Buffer) {
	t.Helper()
	buf := &bytes.Buffer{}
	l, err := OpenLedger(path, maxAge, maxEntries, NewLogger("trailstack.0", buf))
	if err != nil {
		t.Fatal(err)
	}
	return l, buf
}

// A confirmation is kept across a close and a new open (a restart); what was not confirmed
// is not, nor is a chunk of the same bytes under another tag or cut short.
func TestLedgerKeepsWhatWasConfirmed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "l", "x.ledger")
	chunk := chunkOf("a", "b")
	l, _ := openTestLedger(t, path, time.Hour, 1000)
	l.Confirm(idOf("tag", chunk))
	if !l.Confirmed(idOf("tag", chunk)) {
		t.Fatal("not confirmed before the sync")
	}
	// What Confirm wrote is in the files when it returns: a process killed now (no sync,
	// no close) keeps it. Copies of the files stand for what the killed process left.
	killed := filepath.Join(filepath.Dir(path), "killed.ledger")
	for _, suffix := range []string{"", ".journal0", ".journal1"} {
		b, err := os.ReadFile(path + suffix)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(killed+suffix, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	k, _ := openTestLedger(t, killed, time.Hour, 1000)
	if !k.Confirmed(idOf("tag", chunk)) {
		t.Error("a confirmation was not in the file when Confirm returned")
	}
	k.Close()
	l.Close()
	l, _ = openTestLedger(t, path, time.Hour, 1000)
	defer l.Close()
	if !l.Confirmed(idOf("tag", chunk)) {
		t.Error("the confirmation did not outlive the process")
	}
	for name, id := range map[string]ChunkID{
		"another chunk":   idOf("tag", chunkOf("a", "c")),
		"another tag":     idOf("tag2", chunk),
		"the chunk, cut":  idOf("tag", chunk[:len(chunk)-1]),
		"a longer chunk":  idOf("tag", chunkOf("a", "b", "c")),
		"the empty chunk": idOf("tag", nil),
	} {
		if l.Confirmed(id) {
			t.Errorf("%s is taken as confirmed", name)
		}
	}
	if l.Entries() != 1 {
		t.Errorf("%d entries, want 1", l.Entries())
	}
}

// A file that is not a sound ledger is set aside and said, and a new one starts: its
// entries cost duplicates, never lines.
func TestLedgerCorruptIsSetAside(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.ledger")
	chunk := chunkOf("a")
	l, _ := openTestLedger(t, path, time.Hour, 1000)
	l.Confirm(idOf("tag", chunk))
	l.Close()
	// Garbage over the middle of the file, where bbolt keeps its pages.
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := len(b) / 4; i < len(b); i++ {
		b[i] = 0xA5
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	l, log := openTestLedger(t, path, time.Hour, 1000)
	if l.Confirmed(idOf("tag", chunk)) {
		t.Error("a corrupt ledger was trusted")
	}
	if !strings.Contains(log.String(), "cannot be trusted") {
		t.Errorf("log:\n%s", log)
	}
	aside, _ := filepath.Glob(path + ".corrupt-*")
	if len(aside) != 1 {
		t.Errorf("set aside: %v", aside)
	}
	// A file that is not bbolt at all.
	l.Close()
	if err := os.WriteFile(path, []byte("not a ledger"), 0o600); err != nil {
		t.Fatal(err)
	}
	l, log = openTestLedger(t, path, time.Hour, 1000)
	defer l.Close()
	if l.Entries() != 0 || !strings.Contains(log.String(), "cannot be trusted") {
		t.Errorf("%d entries; log:\n%s", l.Entries(), log)
	}
}

// Windows older than the ledger's age, and the oldest while it holds too many entries, are
// dropped whole; the window being written never is.
func TestLedgerForgetsByAgeAndCount(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.ledger")
	l, _ := openTestLedger(t, path, 24*time.Hour, 1000)
	defer l.Close()
	now := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	l.now = func() time.Time { return now }
	var ids []ChunkID
	for h := 0; h < 30; h++ { // one chunk an hour for 30 hours
		id := idOf("tag", chunkOf(strings.Repeat("x", h+1)))
		ids = append(ids, id)
		l.Confirm(id)
		l.sync()
		now = now.Add(time.Hour)
	}
	for h, id := range ids {
		// After 30 hours, what was confirmed more than 24 hours (a window: one hour) ago
		// is gone.
		if want := h >= 30-25; l.Confirmed(id) != want {
			t.Errorf("confirmed %d hours before: %v, want %v", 30-h, !want, want)
		}
	}
	// Too many entries: the oldest windows go until it holds what the cap allows.
	l.maxEntries = 1000
	for i := 0; i < 1200; i++ {
		l.Confirm(idOf("tag", chunkOf("y", strings.Repeat("z", i))))
	}
	l.sync()
	if n := l.Entries(); n != 1200 { // the window being written stays whole
		t.Errorf("%d entries after adding 1,200 to a ledger of 1,000 at most", n)
	}
	if l.Confirmed(ids[len(ids)-1]) {
		t.Error("the cap kept the oldest windows")
	}
}

// Two outputs never share a ledger: the second of one process goes without.
func TestLedgerNotShared(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.ledger")
	l, _ := openTestLedger(t, path, time.Hour, 1000)
	if _, err := OpenLedger(path, time.Hour, 1000, NewLogger("x", &bytes.Buffer{})); err == nil {
		t.Error("a second output opened the same ledger")
	}
	l.Close()
	l2, _ := openTestLedger(t, path, time.Hour, 1000) // a hot reload's new instance
	l2.Close()
}

// Through an instance: a chunk the destination confirmed is not sent again, by this instance
// or the next one on the same ledger_dir (a restart), and is counted; a chunk answered
// Retry, or a corrupt one, is never recorded.
func TestFlushSkipsWhatTheLedgerConfirmed(t *testing.T) {
	dir := t.TempDir()
	s := &fakeSink{}
	keys := func() MapGetter { return MapGetter{"ledger_dir": dir} }
	in, log := newTestInstance(t, s, keys())
	a, b := chunkOf("a1", "a2"), chunkOf("b1")
	fail := true
	s.answer = func(_ context.Context, bt *Batch) Result {
		if fail && bytes.Equal(bt.Data, b) {
			return Result{Status: Retry}
		}
		return Result{Status: Delivered}
	}
	if st := in.Flush(a, "tag"); st != Delivered {
		t.Fatal(st)
	}
	if st := in.Flush(b, "tag"); st != Retry {
		t.Fatal(st)
	}
	if st := in.Flush(a, "tag"); st != Delivered { // a retry of a chunk already confirmed
		t.Fatal(st)
	}
	in.Close()
	if got := strings.Join(s.logs, ","); got != "a1,a2" {
		t.Fatalf("arrived %s, want a1,a2", got)
	}
	if !strings.Contains(log.String(), "skipped 2 records of 1 chunks") || !strings.Contains(log.String(), "2 records skipped as already confirmed") {
		t.Errorf("log:\n%s", log)
	}

	// The next process: the engine replays both stored chunks.
	fail = false
	in, _ = newTestInstance(t, s, keys())
	skipped := testutil.ToFloat64(in.metrics.Skipped)
	in.Flush(a, "tag")
	in.Flush(b, "tag")
	in.Flush(a, "other-tag") // the same bytes under another tag: another chunk
	if got := strings.Join(s.logs, ","); got != "a1,a2,b1,a1,a2" {
		t.Errorf("arrived %s, want a1,a2,b1,a1,a2", got)
	}
	if d := testutil.ToFloat64(in.metrics.Skipped) - skipped; d != 2 {
		t.Errorf("skipped series grew by %v, want 2", d)
	}
	in.Close()
}

// Without ledger_dir nothing is kept, and a ledger_dir that cannot be made leaves the output
// running without one, said once.
func TestNoLedger(t *testing.T) {
	s := &fakeSink{}
	in, _ := newTestInstance(t, s, MapGetter{})
	in.Flush(chunkOf("a"), "tag")
	in.Flush(chunkOf("a"), "tag")
	in.Close()
	if len(s.logs) != 2 {
		t.Errorf("arrived %v", s.logs)
	}
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s = &fakeSink{}
	in, log := newTestInstance(t, s, MapGetter{"ledger_dir": filepath.Join(file, "ledger")})
	in.Flush(chunkOf("a"), "tag")
	in.Flush(chunkOf("a"), "tag")
	in.Close()
	if len(s.logs) != 2 || strings.Count(log.String(), "ledger_dir: no ledger") != 1 {
		t.Errorf("arrived %v; log:\n%s", s.logs, log)
	}
}
