package core

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestWaits(t *testing.T) {
	for n, want := range map[int]time.Duration{0: 0, 1: 500 * time.Millisecond, 2: time.Second, 4: 4 * time.Second, 20: 30 * time.Second} {
		if got := RefusedWait(n); got != want {
			t.Errorf("RefusedWait(%d) = %v, want %v", n, got, want)
		}
	}
	for _, r := range []float64{0, 0.5, 0.999} {
		if d := HungWait(1, r); d < 4*time.Second || d > 6*time.Second {
			t.Errorf("HungWait(1, %v) = %v, want 5 s ± a fifth", r, d)
		}
		if d := HungWait(20, r); d < 24*time.Second || d > 36*time.Second {
			t.Errorf("HungWait(20, %v) = %v, want 30 s ± a fifth", r, d)
		}
	}
	if HungWait(1, 0) == HungWait(1, 0.9) {
		t.Error("no jitter")
	}
}

func TestBackoff(t *testing.T) {
	now := time.Unix(1000, 0)
	b := Backoff{Clock: func() time.Time { return now }}
	if err := b.Check("d"); err != nil {
		t.Fatal(err)
	}
	b.Failed(errors.New("refused"), false)
	if err := b.Check("d"); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("within the wait: %v", err)
	}
	now = now.Add(RefusedWait(1))
	if err := b.Check("d"); err != nil {
		t.Fatalf("after the wait: %v", err)
	}
	b.Failed(errors.New("timed out"), true)
	now = now.Add(3 * time.Second)
	if err := b.Check("d"); err == nil {
		t.Fatal("a hung destination was tried again within 3 s")
	}
	b.Succeeded()
	if err := b.Check("d"); err != nil {
		t.Fatal(err)
	}
}
