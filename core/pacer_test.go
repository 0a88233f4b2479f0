package core

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestPushedWait(t *testing.T) {
	for _, r := range []float64{0, 0.5, 0.999} {
		if d := PushedWait(1, 0, r); d < 400*time.Millisecond || d > 600*time.Millisecond {
			t.Errorf("PushedWait(1, 0, %v) = %v, want 0.5 s ± a fifth", r, d)
		}
		if d := PushedWait(1, 10*time.Second, r); d < 8*time.Second || d > 12*time.Second {
			t.Errorf("PushedWait(1, 10s, %v) = %v, want the 10 s asked ± a fifth", r, d)
		}
	}
	if PushedWait(3, 0, 0) == PushedWait(3, 0, 0.9) {
		t.Error("no jitter")
	}
}

// fakeTimers stands in for time.After: each wait asked for is a channel the test fires.
type fakeTimers struct {
	mu    sync.Mutex
	asked []chan time.Time
}

func (f *fakeTimers) After(time.Duration) <-chan time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := make(chan time.Time, 1)
	f.asked = append(f.asked, c)
	return c
}

func (f *fakeTimers) fireAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.asked {
		c <- time.Time{}
	}
	f.asked = nil
}

// After a pushback the whole output waits: no flush tries until the wait is over, then one
// tries alone; as attempts go through, more go at once, until the output is not paced.
func TestPacerOneBackoffForTheOutput(t *testing.T) {
	now := time.Unix(1000, 0)
	var mu sync.Mutex
	timers := &fakeTimers{}
	p := &Pacer{Clock: func() time.Time { mu.Lock(); defer mu.Unlock(); return now }, After: timers.After}
	if err := p.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	p.Pushed(errors.New("quota"), 0)
	const flushes = 40
	started := make(chan chan struct{}, flushes) // each started attempt, ended by closing its channel
	for i := 0; i < flushes; i++ {
		go func() {
			if p.Wait(context.Background()) != nil {
				return
			}
			end := make(chan struct{})
			started <- end
			<-end
			p.Done()
		}()
	}
	select {
	case <-started:
		t.Fatal("a flush tried within the wait")
	case <-time.After(50 * time.Millisecond):
	}
	mu.Lock()
	now = now.Add(time.Second)
	mu.Unlock()
	timers.fireAll()
	// Rounds: every attempt of a round ends before the next round starts; each round may be
	// larger than the one before, never more than half as large again, from one.
	var rounds []int
	for done := 0; done < flushes; {
		var round []chan struct{}
		round = append(round, <-started)
	more:
		for {
			select {
			case end := <-started:
				round = append(round, end)
			case <-time.After(50 * time.Millisecond):
				break more
			}
		}
		rounds = append(rounds, len(round))
		for _, end := range round {
			close(end)
		}
		done += len(round)
	}
	if rounds[0] != 1 {
		t.Fatalf("rounds %v: the first after the wait is not alone", rounds)
	}
	for i := 1; i < len(rounds)-1; i++ {
		if rounds[i] > rounds[i-1]+max(1, rounds[i-1]/2) {
			t.Fatalf("rounds %v: grew too fast", rounds)
		}
	}
	t.Logf("attempts at once after a pushback: %v", rounds)
}

// A flush whose deadline comes within the wait answers with the destination's last answer.
func TestPacerWaitEndsAtTheDeadline(t *testing.T) {
	p := &Pacer{}
	p.Pushed(errors.New("RESOURCE_EXHAUSTED: quota"), time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := p.Wait(ctx); err == nil || !strings.Contains(err.Error(), "RESOURCE_EXHAUSTED") || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("%v", err)
	}
}
