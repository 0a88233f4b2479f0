package core

import (
	"testing"
	"unicode/utf8"
)

func TestSeverityNamed(t *testing.T) {
	for name, want := range map[string]Severity{
		"EMERG": 0, "Alert": 1, "fatal": 2, " error ": 3, "SEVERE": 3, "w": 4, "notice": 5,
		"Informational": 6, "trace": 7, "finest": 7, "default": SeverityDefault,
	} {
		if got, ok := SeverityNamed([]byte(name)); !ok || got != want {
			t.Errorf("%q = %d %v, want %d", name, got, ok, want)
		}
	}
	for _, bad := range []string{"", "3", "verbose", "informationally", "wärn"} {
		if _, ok := SeverityNamed([]byte(bad)); ok {
			t.Errorf("%q read as a severity", bad)
		}
	}
	if n := testing.AllocsPerRun(100, func() { SeverityNamed([]byte("Warning")) }); n != 0 {
		t.Errorf("%v allocations a name", n)
	}
}

func TestRuneCut(t *testing.T) {
	s := "aé日本✓"
	for n := 0; n <= len(s)+1; n++ {
		c := RuneCut(s, n)
		if c > n || !utf8.ValidString(s[:c]) || (c < len(s) && n-c >= utf8.RuneLen([]rune(s[c:])[0])) {
			t.Errorf("RuneCut(%q, %d) = %d", s, n, c)
		}
		if b := RuneCut([]byte(s), n); b != c {
			t.Errorf("bytes: %d, string: %d", b, c)
		}
	}
}
