package sample

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/trailstack/trailstack/testkit/fixture"
)

func TestLoadTheDemoSample(t *testing.T) {
	s, err := Load(fixture.ContainerLogs())
	if err != nil {
		t.Fatal(err)
	}
	// generate.py writes 209 lines; three long lines are two parts each (P, F).
	if s.Files != 3 || s.Physical != 209 || len(s.Lines) != 206 || s.MultiPart() != 3 {
		t.Fatalf("files %d, physical lines %d, lines %d, in parts %d; want 3, 209, 206, 3", s.Files, s.Physical, len(s.Lines), s.MultiPart())
	}
}

const small = `2026-11-26T12:00:00.000001000Z stdout F one
2026-11-26T12:00:00.000002000Z stderr F Exception in thread "main" java.lang.IllegalStateException: boom
2026-11-26T12:00:00.000003000Z stdout P AAA
2026-11-26T12:00:00.000004000Z stderr F 	at com.example.A.a(A.java:1)
2026-11-26T12:00:00.000005000Z stdout F BBB
2026-11-26T12:00:00.000006000Z stderr F 	at com.example.B.b(B.java:2)
2026-11-26T12:00:00.000007000Z stdout F 
2026-11-26T12:00:00.000008000Z stdout F two
`

func load(t *testing.T, text string) *Sample {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "p-1_ns_app-0123.log"), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func at(us int) time.Time { return time.Date(2026, 11, 26, 12, 0, 0, us*1000, time.UTC) }

func TestTally(t *testing.T) {
	s := load(t, small)
	if len(s.Lines) != 7 || s.Physical != 8 || s.Lines[0].Container != "app" {
		t.Fatalf("%d lines of %d, container %q", len(s.Lines), s.Physical, s.Lines[0].Container)
	}
	if got := s.Lines[3].Text; got != "AAABBB" || !s.Lines[3].Time.Equal(at(3)) {
		t.Fatalf("parts joined as %q", got)
	}
	trace := "Exception in thread \"main\" java.lang.IllegalStateException: boom\n\tat com.example.A.a(A.java:1)\n\tat com.example.B.b(B.java:2)"
	all := func(tl *Tally) {
		tl.Add(at(1), "one")
		tl.Add(at(2), trace)
		tl.Add(at(3), "AAABBB")
		tl.Add(at(7), "")
		tl.Add(at(8), "two")
	}
	for _, tc := range []struct {
		name string
		add  func(*Tally)
		want Count
	}{
		{"every line once", all, Count{Lines: 7, Messages: 5, Received: 7, Traces: 1, Joined: 2}},
		{"one lost", func(tl *Tally) {
			tl.Add(at(1), "one")
			tl.Add(at(2), trace)
			tl.Add(at(3), "AAABBB")
			tl.Add(at(8), "two")
		}, Count{Lines: 7, Messages: 4, Received: 6, Lost: 1, Traces: 1, Joined: 2}},
		{"a trace cut short loses its last line", func(tl *Tally) {
			tl.Add(at(1), "one")
			tl.Add(at(2), trace[:len(trace)-30])
			tl.Add(at(3), "AAABBB")
			tl.Add(at(7), "")
			tl.Add(at(8), "two")
		}, Count{Lines: 7, Messages: 5, Received: 6, Lost: 1, Traces: 1, Joined: 1}},
		{"a trace's lines apart", func(tl *Tally) {
			tl.Add(at(1), "one")
			tl.Add(at(2), "Exception in thread \"main\" java.lang.IllegalStateException: boom")
			tl.Add(at(4), "\tat com.example.A.a(A.java:1)")
			tl.Add(at(6), "\tat com.example.B.b(B.java:2)")
			tl.Add(at(3), "AAABBB")
			tl.Add(at(7), "")
			tl.Add(at(8), "two")
		}, Count{Lines: 7, Messages: 7, Received: 7}},
		{"all twice", func(tl *Tally) { all(tl); all(tl) }, Count{Lines: 7, Messages: 10, Received: 7, Twice: 7, Traces: 2, Joined: 4}},
		{"a joined line also alone", func(tl *Tally) {
			all(tl)
			tl.Add(at(4), "\tat com.example.A.a(A.java:1)")
		}, Count{Lines: 7, Messages: 6, Received: 7, Twice: 1, Traces: 1, Joined: 2}},
		{"a stranger", func(tl *Tally) { all(tl); tl.Add(at(99), "who") }, Count{Lines: 7, Messages: 6, Received: 7, Traces: 1, Joined: 2, Unknown: 1}},
	} {
		tl := NewTally(s)
		tc.add(tl)
		got := tl.Count()
		if got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
		if want := tc.want.Lost == 0 && tc.want.Twice == 0 && tc.want.Unknown == 0; got.Complete() != want {
			t.Errorf("%s: complete %v", tc.name, got.Complete())
		}
	}
}

func TestLoadRefuses(t *testing.T) {
	for name, text := range map[string]string{
		"not CRI":       "hello\n",
		"same stamp":    "2026-11-26T12:00:00.000001000Z stdout F a\n2026-11-26T12:00:00.000001400Z stdout F b\n",
		"ends in parts": "2026-11-26T12:00:00.000001000Z stdout P a\n",
	} {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "x.log"), []byte(text), 0o644)
		if _, err := Load(dir); err == nil {
			t.Errorf("%s: loaded", name)
		}
	}
}
