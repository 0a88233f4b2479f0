package syslog

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trailstack/trailstack/core"
	"github.com/trailstack/trailstack/testkit/delayline"
)

// A peer that vanishes after the connection is up, its packets dropped: the writes go into
// the kernel, yet the flush must answer RETRY once ack_timeout passes, and nothing counts as
// delivered. The receiver lives in a network namespace of its own behind a veth pair; the
// test drops its packets with netem loss 100% where the kernel has netem, else by taking the
// peer's link down (this project's machines have no netem), which drops them the same way.
func TestPeerVanishesPacketsDropped(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipped: needs root to make a network namespace")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("skipped: needs ip from iproute2")
	}
	ns := fmt.Sprintf("ts%d", os.Getpid()%100000)
	hostIf, nsIf := ns+"a", ns+"b"
	run := func(args ...string) error {
		out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %v: %s", args, err, out)
		}
		return nil
	}
	must := func(args ...string) {
		t.Helper()
		if err := run(args...); err != nil {
			t.Fatal(err)
		}
	}
	// Addresses inside this test's own namespace and veth pair only.
	must("ip", "netns", "add", ns)
	t.Cleanup(func() { _ = run("ip", "link", "del", hostIf); _ = run("ip", "netns", "del", ns) })
	must("ip", "link", "add", hostIf, "type", "veth", "peer", "name", nsIf, "netns", ns)
	must("ip", "addr", "add", "10.213.9.1/30", "dev", hostIf)
	must("ip", "link", "set", hostIf, "up")
	must("ip", "-n", ns, "addr", "add", "10.213.9.2/30", "dev", nsIf)
	must("ip", "-n", ns, "link", "set", nsIf, "up")
	must("ip", "-n", ns, "link", "set", "lo", "up")

	r := startReceiver(t, &receiver{ln: listenInNetns(t, ns, "10.213.9.2:0")})
	s := newSink(t, core.MapGetter{"address": "tcp://" + r.addr(), "ack_timeout": "1s", "dial_timeout": "2s"})
	b := chunkBatch(t, "kube-merged", "chunk-002.msgpack")
	retryUntilDelivered(t, s, b, 5*time.Second, "first flush (the veth link takes a moment to come up)")
	r.waitFrames(len(b.Records))

	how := "netem loss 100%"
	if err := run("tc", "qdisc", "add", "dev", hostIf, "root", "netem", "loss", "100%"); err != nil {
		how = "peer link down (no netem in this kernel)"
		must("ip", "-n", ns, "link", "set", nsIf, "down")
	}
	start := time.Now()
	res := s.Deliver(context.Background(), b)
	took := time.Since(start)
	if res.Status != core.Retry || !strings.Contains(res.Err.Error(), "not acknowledged") || took < time.Second || took > 5*time.Second {
		t.Fatalf("with packets dropped (%s): %v after %v: %v", how, res.Status, took, res.Err)
	}
	t.Logf("packets dropped by %s: RETRY after %v: %v", how, took.Round(time.Millisecond), res.Err)
	if n := len(r.received()); n != len(b.Records) {
		t.Fatalf("%d records at the receiver, want only the first flush's %d", n, len(b.Records))
	}

	if how == "netem loss 100%" {
		must("tc", "qdisc", "del", "dev", hostIf, "root")
	} else {
		must("ip", "-n", ns, "link", "set", nsIf, "up")
	}
	retryUntilDelivered(t, s, b, 10*time.Second, "after the network came back")
	// The retried flush arrives whole on its new connection. Packets of the abandoned
	// attempt that the kernel had parked (waiting for the neighbour to resolve) may still
	// arrive once the link is back: duplicates of that one chunk, never a loss.
	frames := r.waitFrames(2 * len(b.Records))
	if n := len(frames); n < 2*len(b.Records) || n > 3*len(b.Records) {
		t.Fatalf("%d records at the receiver, want %d to %d", n, 2*len(b.Records), 3*len(b.Records))
	}
	seen := map[string]int{}
	for _, f := range frames {
		seen[string(f)]++
	}
	sc := s.f.newScratch()
	for i := range b.Records {
		want := strings.TrimSuffix(string(s.f.appendFrame(nil, &b.Records[i], b.Tag, sc)), "\n")
		if seen[want] < 2 {
			t.Fatalf("record %d arrived %d times, want the first flush and the retry: %q", i, seen[want], want)
		}
	}
	r.mu.Lock()
	t.Logf("after recovery: %d records on %d connections (%d duplicates of the dropped attempt)",
		len(r.frames), len(r.conns), len(r.frames)-2*len(b.Records))
	r.mu.Unlock()
}

// retryUntilDelivered flushes b again and again, as Fluent Bit's scheduler would (without its
// seconds of backoff, nor the sink's own), until it is delivered within the time given.
func retryUntilDelivered(t *testing.T, s *sink, b *core.Batch, within time.Duration, what string) {
	t.Helper()
	var res core.Result
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if res = s.Deliver(context.Background(), b); res.Status == core.Delivered {
			return
		}
		s.backoff.Succeeded()
	}
	t.Fatalf("%s: %v %v", what, res.Status, res.Err)
}

// listenInNetns opens a listener inside network namespace ns.
func listenInNetns(t *testing.T, ns, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	if err := delayline.InNetns(ns, func() (err error) { ln, err = net.Listen("tcp", addr); return err }); err != nil {
		t.Fatal(err)
	}
	return ln
}

// At a distance, flushes on several workers share one connection and overlap their round
// trips: eight at once take about one round trip, not eight, and each is confirmed only by
// the peer's acknowledgement of its own last byte (the receiver counts every frame).
func TestFlushesOverlapTheirRoundTrips(t *testing.T) {
	const rtt = 200 * time.Millisecond
	l := delayline.Start(t, "tso", 216, rtt)
	ln, err := l.Listen(nil, "tcp", l.FarIP+":0")
	if err != nil {
		t.Fatal(err)
	}
	r := startReceiver(t, &receiver{ln: ln})
	s := newSink(t, core.MapGetter{"address": "tcp://" + r.addr()})
	// Small flushes: eight together stay within TCP's initial window, so the time measures
	// how the flushes wait, not slow start.
	b := chunkBatch(t, "kube-merged", "chunk-002.msgpack")
	b.Records = b.Records[:4]
	retryUntilDelivered(t, s, b, 5*time.Second, "first flush")
	start := time.Now()
	deliverAtOnce(t, s, b, 8, core.Delivered)
	took := time.Since(start)
	// One at a time would take eight round trips at least; half of that is far from both.
	if took > 4*rtt {
		t.Errorf("8 flushes at once took %v with a %v round trip: they did not overlap", took, rtt)
	}
	if n := len(r.waitFrames(9 * len(b.Records))); n != 9*len(b.Records) {
		t.Fatalf("%d frames arrived, want %d", n, 9*len(b.Records))
	}
	r.mu.Lock()
	conns := len(r.conns)
	r.mu.Unlock()
	if conns != 1 {
		t.Errorf("%d connections, want the one shared", conns)
	}
	t.Logf("8 flushes of %d records at once over a %v round trip: %v, on %d connection", len(b.Records), rtt, took.Round(time.Millisecond), conns)
}

// Flushes that share a connection fail together when it stalls (the link drops every
// packet: each waits in vain for its acknowledgement), and the destination's backoff counts
// that once: the next attempt waits the first step (5 s), not the step of as many failures
// as there were flushes waiting (with a connection a flush, six stalls counted six).
func TestOneStallCountsOnce(t *testing.T) {
	l := delayline.Start(t, "tsb", 218, 10*time.Millisecond)
	ln, err := l.Listen(nil, "tcp", l.FarIP+":0")
	if err != nil {
		t.Fatal(err)
	}
	r := startReceiver(t, &receiver{ln: ln})
	s := newSink(t, core.MapGetter{"address": "tcp://" + r.addr(), "ack_timeout": "500ms"})
	b := chunkBatch(t, "kube-merged", "chunk-002.msgpack")
	retryUntilDelivered(t, s, b, 5*time.Second, "first flush")
	l.SetDown(true)
	deliverAtOnce(t, s, b, 6, core.Retry)
	err = s.backoff.Check(s.cfg.addr)
	if err == nil || !strings.Contains(err.Error(), "after 1 failed attempts") {
		t.Fatalf("after one stalled connection: %v", err)
	}
	t.Logf("six flushes on one stalled connection: %v", err)
}

// deliverAtOnce flushes b from n goroutines at once, as n workers would, and wants each to
// answer want.
func deliverAtOnce(t *testing.T, s *sink, b *core.Batch, n int, want core.Status) {
	t.Helper()
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			if res := s.Deliver(context.Background(), b); res.Status != want {
				t.Errorf("%v, want %v: %v", res.Status, want, res.Err)
			}
		})
	}
	wg.Wait()
}
