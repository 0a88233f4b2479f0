package syslog

import (
	"bytes"
	"context"
	"errors"
	"net"
	"path/filepath"

	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leodido/go-syslog/v4/rfc5424"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tinylib/msgp/msgp"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/trailstack/trailstack/core"
	"github.com/trailstack/trailstack/record"

	"github.com/trailstack/trailstack/testkit/fixture"
)

func newSink(t testing.TB, keys core.MapGetter) *sink {
	t.Helper()
	return fixture.Sink(t, Kind, keys).(*sink)
}

// chunkBatch is one fixture chunk as the core would hand it to the sink.
func chunkBatch(t testing.TB, set, name string) *core.Batch {
	t.Helper()
	return fixture.Batch(t, filepath.Join(fixture.Dir(), set, name))
}

// bigChunk is a chunk of about size bytes laid out as the kubernetes filter's, nginx lines.
func bigChunk(size int) *core.Batch {
	b, _ := fixture.ShapeBatch("kube", size)
	return b
}

// checkFrames parses every frame strictly and checks it carries the batch's records in order.
func checkFrames(t *testing.T, frames [][]byte, b *core.Batch) {
	t.Helper()
	if len(frames) != len(b.Records) {
		t.Fatalf("%d frames arrived, want %d", len(frames), len(b.Records))
	}
	p := rfc5424.NewParser()
	for i, f := range frames {
		m, err := p.Parse(f)
		if err != nil {
			t.Fatalf("frame %d: %v: %q", i, err, f)
		}
		if ts := m.(*rfc5424.SyslogMessage).Timestamp; !ts.Equal(b.Records[i].Time().Truncate(time.Microsecond)) {
			t.Fatalf("frame %d: timestamp %v, want record %d's %v", i, ts, i, b.Records[i].Time())
		}
	}
}

func TestDeliverOverTLSBothFramings(t *testing.T) {
	pki := newPKI(t, "localhost")
	b := chunkBatch(t, "kube-merged", "chunk-001.msgpack")
	for _, fr := range []framing{framingLF, framingOctet} {
		r := startReceiver(t, &receiver{tlsCfg: pki.Server, framing: fr})
		s := newSink(t, core.MapGetter{"address": r.addr(), "ca_file": pki.CAFile, "framing": fr.String()})
		if res := s.Deliver(context.Background(), b); res.Status != core.Delivered {
			t.Fatalf("%v: %v %v", fr, res.Status, res.Err)
		}
		checkUncorked(t, s)
		// A second flush reuses the connection.
		if res := s.Deliver(context.Background(), b); res.Status != core.Delivered {
			t.Fatalf("%v: %v %v", fr, res.Status, res.Err)
		}
		checkUncorked(t, s)
		frames := r.waitFrames(2 * len(b.Records))
		checkFrames(t, frames[:len(b.Records)], b)
		checkFrames(t, frames[len(b.Records):], b)
		if r.mu.Lock(); len(r.conns) != 1 {
			t.Errorf("%d connections, want 1 reused", len(r.conns))
		}
		r.mu.Unlock()
	}
}

// keptConn is the connection the sink keeps for the next flush, or nil.
func keptConn(s *sink) *conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur
}

// checkUncorked fails unless the sink's connection lets partial segments go: a flush corks
// the socket only while it writes.
func checkUncorked(t *testing.T, s *sink) {
	t.Helper()
	c := keptConn(s)
	if c == nil {
		t.Fatal("no connection kept")
	}
	var v int
	var err error
	if cerr := c.raw.Control(func(fd uintptr) { v, err = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_CORK) }); cerr != nil || err != nil {
		t.Fatal(cerr, err)
	}
	if v != 0 {
		t.Fatal("the connection is left corked after the flush")
	}
}

func TestDeliverOverPlainTCPAndUDP(t *testing.T) {
	b := chunkBatch(t, "kube-merged", "chunk-002.msgpack")
	r := startReceiver(t, &receiver{})
	s := newSink(t, core.MapGetter{"address": "tcp://" + r.addr()})
	if res := s.Deliver(context.Background(), b); res.Status != core.Delivered {
		t.Fatalf("%v %v", res.Status, res.Err)
	}
	checkFrames(t, r.waitFrames(len(b.Records)), b)

	pc, err := newUDPReceiver(t)
	if err != nil {
		t.Fatal(err)
	}
	s = newSink(t, core.MapGetter{"address": "udp://" + pc.LocalAddr().String()})
	if res := s.Deliver(context.Background(), b); res.Status != core.Delivered {
		t.Fatalf("udp: %v %v", res.Status, res.Err)
	}
	var frames [][]byte
	buf := make([]byte, 2048)
	for len(frames) < len(b.Records) {
		_ = pc.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatalf("after %d datagrams: %v", len(frames), err)
		}
		if n > 1024 {
			t.Fatalf("datagram of %d bytes, over the 1024 default", n)
		}
		frames = append(frames, append([]byte(nil), buf[:n]...))
	}
	checkFrames(t, frames, b)
}

// The receiver dies in the middle of a chunk: RETRY; the re-flush to a live receiver
// delivers everything; duplicates are at most the one chunk.
func TestReceiverKilledMidChunk(t *testing.T) {
	pki := newPKI(t, "localhost")
	b := bigChunk(2 << 20)
	// A small receive buffer, so that the receiver's kernel cannot have acknowledged the
	// whole chunk before it dies (loopback's autotuned buffers could hold all of it).
	ln := listenSmallRcvBuf(t)
	dying := startReceiver(t, &receiver{ln: ln, tlsCfg: pki.Server, readStop: 300 << 10})
	s := newSink(t, core.MapGetter{"address": dying.addr(), "ca_file": pki.CAFile, "ack_timeout": "5s", "write_timeout": "5s"})
	res := s.Deliver(context.Background(), b)
	if res.Status != core.Retry {
		t.Fatalf("status %v, want retry", res.Status)
	}
	t.Logf("first attempt: %v", res.Err)
	partial := len(dying.received())
	if partial == 0 || partial >= len(b.Records) {
		t.Fatalf("%d records reached the dying receiver, want some but not all", partial)
	}
	addr := dying.addr()
	dying.stop()
	ln = listenAgain(t, addr)
	alive := startReceiver(t, &receiver{ln: ln, tlsCfg: pki.Server})
	s.backoff.Succeeded() // the sink backs off after a failure; skip the wait
	if res := s.Deliver(context.Background(), b); res.Status != core.Delivered {
		t.Fatalf("re-flush: %v %v", res.Status, res.Err)
	}
	checkFrames(t, alive.waitFrames(len(b.Records)), b)
	t.Logf("%d records arrived twice (the first attempt's), none lost", partial)
}

func listenAgain(t *testing.T, addr string) net.Listener {
	t.Helper()
	for i := 0; ; i++ {
		ln, err := net.Listen("tcp", addr)
		if err == nil {
			return ln
		}
		if i == 50 {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The receiver closes a connection while it is idle: the next flush notices before writing
// and reconnects; nothing is lost.
func TestIdleCloseReconnects(t *testing.T) {
	b := chunkBatch(t, "kube-merged", "chunk-003.msgpack")
	pki := newPKI(t, "localhost")
	r := startReceiver(t, &receiver{tlsCfg: pki.Server, idleKill: true})
	s := newSink(t, core.MapGetter{"address": r.addr(), "ca_file": pki.CAFile})
	one := &core.Batch{Tag: b.Tag, Records: b.Records[:1]}
	for i := 0; i < 3; i++ {
		if res := s.Deliver(context.Background(), one); res.Status != core.Delivered {
			t.Fatalf("flush %d: %v %v", i, res.Status, res.Err)
		}
		r.waitFrames(i + 1)
		// Wait for the receiver's close to reach our idle connection, so that the next flush
		// meets a closed peer rather than racing it.
		select {
		case <-r.closed:
		case <-time.After(5 * time.Second):
			t.Fatal("the receiver did not close the connection")
		}
		waitPeerClosed(t, s)
	}
	if n := len(r.received()); n != 3 {
		t.Fatalf("%d records arrived, want 3", n)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.conns) != 3 {
		t.Fatalf("%d connections, want a new one per flush", len(r.conns))
	}
}

// waitPeerClosed waits until the peer's close (a TLS close_notify, a FIN) has reached the
// sink's connection: it crosses loopback just after the receiver's close returns.
func waitPeerClosed(t *testing.T, s *sink) {
	t.Helper()
	c := keptConn(s)
	if c == nil {
		return // the close arrived before the flush returned: the sink already dropped it
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		if closed, pending, _ := peerState(c.raw); closed || pending {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the peer's close never reached the idle connection")
		}
	}
}

// A receiver that accepts and never reads: RETRY within the configured timeouts, and no
// goroutine of ours is left behind.
func TestReceiverNeverReads(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ln := listenSmallRcvBuf(t)
	r := startReceiver(t, &receiver{ln: ln, noRead: true})
	b := bigChunk(2 << 20)
	s := newSink(t, core.MapGetter{"address": "tcp://" + r.addr(), "write_timeout": "300ms", "ack_timeout": "300ms"})
	start := time.Now()
	res := s.Deliver(context.Background(), b)
	if res.Status != core.Retry || time.Since(start) > 5*time.Second {
		t.Fatalf("status %v after %v: %v", res.Status, time.Since(start), res.Err)
	}
	t.Logf("answered retry after %v: %v", time.Since(start).Round(time.Millisecond), res.Err)
	s.Close()
	r.stop()
}

// A cancelled flush (shutdown) returns RETRY at once instead of waiting out the timeouts.
func TestCancelledFlushReturnsAtOnce(t *testing.T) {
	ln := listenSmallRcvBuf(t)
	r := startReceiver(t, &receiver{ln: ln, noRead: true})
	s := newSink(t, core.MapGetter{"address": "tcp://" + r.addr(), "write_timeout": "1m", "ack_timeout": "1m"})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	start := time.Now()
	if res := s.Deliver(ctx, bigChunk(2<<20)); res.Status != core.Retry || time.Since(start) > 10*time.Second {
		t.Fatalf("status %v after %v", res.Status, time.Since(start))
	}
}

func TestTLSVerificationFailuresRetry(t *testing.T) {
	pki := newPKI(t, "syslog.example")
	r := startReceiver(t, &receiver{tlsCfg: pki.Server})
	b := chunkBatch(t, "kube-merged", "chunk-002.msgpack")
	_, port, _ := net.SplitHostPort(r.addr())
	for _, c := range []struct {
		keys core.MapGetter
		want string
	}{
		{core.MapGetter{"address": r.addr()}, "certificate signed by unknown authority"},
		{core.MapGetter{"address": "localhost:" + port, "ca_file": pki.CAFile}, "certificate is valid for syslog.example, not localhost"},
		{core.MapGetter{"address": "no-such-host.invalid:" + port, "dial_timeout": "3s"}, "no-such-host.invalid"},
	} {
		s := newSink(t, c.keys)
		res := s.Deliver(context.Background(), b)
		if res.Status != core.Retry || res.Err == nil || !strings.Contains(res.Err.Error(), c.want) {
			t.Errorf("%v: %v %v, want retry with %q", c.keys, res.Status, res.Err, c.want)
		}
	}
	// With the right CA and name, the same receiver takes the records.
	s := newSink(t, core.MapGetter{"address": "localhost:" + port, "ca_file": pki.CAFile, "server_name": "syslog.example"})
	if res := s.Deliver(context.Background(), b); res.Status != core.Delivered {
		t.Fatalf("%v %v", res.Status, res.Err)
	}
	if n := len(r.waitFrames(len(b.Records))); n != len(b.Records) {
		t.Fatalf("%d arrived", n)
	}
}

func TestReconnectBackoff(t *testing.T) {
	now := time.Unix(1000, 0)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close() // nothing listens: every dial is refused
	s := newSink(t, core.MapGetter{"address": "tcp://" + addr})
	s.clock = func() time.Time { return now }
	b := &core.Batch{Tag: "t", Records: chunkBatch(t, "kube-merged", "chunk-002.msgpack").Records[:1]}
	res := s.Deliver(context.Background(), b)
	if res.Status != core.Retry || !strings.Contains(res.Err.Error(), "connection refused") {
		t.Fatalf("%v %v", res.Status, res.Err)
	}
	res = s.Deliver(context.Background(), b)
	if res.Status != core.Retry || !strings.Contains(res.Err.Error(), "not trying") {
		t.Fatalf("within backoff: %v %v", res.Status, res.Err)
	}
	now = now.Add(core.RefusedWait(1))
	r := startReceiver(t, &receiver{ln: listenAgain(t, addr)})
	if res := s.Deliver(context.Background(), b); res.Status != core.Delivered {
		t.Fatalf("after backoff: %v %v", res.Status, res.Err)
	}
	r.waitFrames(1)
	for n, want := range map[int]time.Duration{0: 0, 1: 500 * time.Millisecond, 2: time.Second, 4: 4 * time.Second, 20: 30 * time.Second} {
		if got := core.RefusedWait(n); got != want {
			t.Errorf("RefusedWait(%d) = %v, want %v", n, got, want)
		}
	}
}

// Several workers flush into one sink at once.
func TestConcurrentDeliveries(t *testing.T) {
	pki := newPKI(t, "localhost")
	r := startReceiver(t, &receiver{tlsCfg: pki.Server})
	s := newSink(t, core.MapGetter{"address": r.addr(), "ca_file": pki.CAFile})
	b := chunkBatch(t, "kube-merged", "chunk-003.msgpack")
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 5; i++ {
				if res := s.Deliver(context.Background(), b); res.Status != core.Delivered {
					t.Errorf("%v %v", res.Status, res.Err)
				}
			}
		}()
	}
	wg.Wait()
	if n := len(r.waitFrames(20 * len(b.Records))); n != 20*len(b.Records) {
		t.Fatalf("%d frames, want %d", n, 20*len(b.Records))
	}
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []struct {
		keys core.MapGetter
		want string
	}{
		{core.MapGetter{}, `config key "address": required`},
		{core.MapGetter{"address": "http://h:1"}, `config key "address": invalid value "http://h:*****"`},
		{core.MapGetter{"address": "h"}, `want host:port`},
		{core.MapGetter{"address": "h:1", "ca_file": "/nonexistent"}, `config key "ca_file"`},
		{core.MapGetter{"address": "udp://h:1", "framing": "lf"}, `config key "framing"`},
		{core.MapGetter{"address": "udp://h:1", "max_size": "100000"}, `config key "max_size": 100000 is more than a UDP datagram holds (65507)`},
		{core.MapGetter{"address": "h:1", "ack_timeout": "soon"}, `config key "ack_timeout": invalid value "soon"`},
		{core.MapGetter{"address": "h:1", "hostname": "$x['unclosed"}, `config key "hostname"`},
	} {
		_, err := fixture.Build(t, Kind, c.keys, nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want %q", c.keys, err, c.want)
		}
	}
}

// A destination that timed out is not tried again for core.HungWait: the flushes queued behind
// the first answer RETRY at once, so a hung receiver cannot hold Fluent Bit's workers (and
// its shutdown) for a timeout per chunk. Once the wait is over, the next flush tries again.
func TestHungDestinationAnswersAtOnce(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	ln := listenSmallRcvBuf(t)
	r := startReceiver(t, &receiver{ln: ln, noRead: true})
	b := bigChunk(2 << 20)
	// The clock is the test's: flush_timeout (real time) ends the flushes that try.
	s := newSink(t, core.MapGetter{"address": "tcp://" + r.addr(), "write_timeout": "300ms", "ack_timeout": "300ms", "flush_timeout": "1s"})
	s.clock = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	if res := s.Deliver(context.Background(), b); res.Status != core.Retry {
		t.Fatalf("first flush: %v %v", res.Status, res.Err)
	}
	for i := 0; i < 20; i++ {
		start := time.Now()
		res := s.Deliver(context.Background(), b)
		if res.Status != core.Retry || !strings.Contains(res.Err.Error(), "not trying") || time.Since(start) > 100*time.Millisecond {
			t.Fatalf("queued flush %d: %v after %v: %v", i, res.Status, time.Since(start), res.Err)
		}
	}
	mu.Lock()
	now = now.Add(core.HungWait(1, 1))
	mu.Unlock()
	if res := s.Deliver(context.Background(), b); res.Status != core.Retry || strings.Contains(res.Err.Error(), "not trying") {
		t.Fatalf("after the wait the flush must try again: %v %v", res.Status, res.Err)
	}
}

// A TLS destination that accepts and never answers the handshake: the flush ends within
// flush_timeout even with a long dial_timeout.
func TestFlushDeadlineCoversTheDial(t *testing.T) {
	pki := newPKI(t, "localhost")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close() // the kernel completes connections; nobody speaks TLS
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	s := newSink(t, core.MapGetter{"address": "localhost:" + port, "ca_file": pki.CAFile, "dial_timeout": "1m", "write_timeout": "300ms", "ack_timeout": "300ms", "flush_timeout": "600ms"})
	start := time.Now()
	res := s.Deliver(context.Background(), chunkBatch(t, "kube-merged", "chunk-002.msgpack"))
	if res.Status != core.Retry || time.Since(start) > 5*time.Second {
		t.Fatalf("%v after %v: %v", res.Status, time.Since(start), res.Err)
	}
	if res := s.Deliver(context.Background(), chunkBatch(t, "kube-merged", "chunk-002.msgpack")); !strings.Contains(res.Err.Error(), "not trying") {
		t.Fatalf("a handshake timeout must back off like a hung peer: %v", res.Err)
	}
}

// A slow but live link (1 MB/s, a small receive window) delivers a 2 MB chunk although it
// takes longer than write_timeout and ack_timeout together: they bound a stall, not the
// transfer.
func TestSlowLinkDelivers(t *testing.T) {
	ln := listenSmallRcvBuf(t)
	r := startReceiver(t, &receiver{ln: ln, readRate: 1 << 20})
	b := bigChunk(6 << 20)
	recs := b.Records
	s := newSink(t, core.MapGetter{"address": "tcp://" + r.addr(), "write_timeout": "1s", "ack_timeout": "1s", "flush_timeout": "30s"})
	start := time.Now()
	if res := s.Deliver(context.Background(), b); res.Status != core.Delivered {
		t.Fatalf("after %v: %v %v", time.Since(start), res.Status, res.Err)
	}
	if n := len(r.waitFrames(len(recs))); n != len(recs) {
		t.Fatalf("%d of %d arrived", n, len(recs))
	}
	t.Logf("%d records (about 2 MB) over a 1 MB/s link in %v with 1 s timeouts", len(recs), time.Since(start).Round(time.Millisecond))
}

// Papertrail's port is a credential: no log line and no error shows it, the host stays.
func TestPortIsNeverShown(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close() // refused
	_, port, _ := net.SplitHostPort(addr)
	var logged bytes.Buffer
	keys := core.MapGetter{"address": "tcp://" + addr, "dial_timeout": "1s"}
	snk, err := fixture.Build(t, Kind, keys, &logged)
	if err != nil {
		t.Fatal(err)
	}
	b := &core.Batch{Tag: "t", Records: chunkBatch(t, "kube-merged", "chunk-002.msgpack").Records[:1]}
	var errs []string
	for i := 0; i < 2; i++ { // refused, then within the backoff
		res := snk.Deliver(context.Background(), b)
		errs = append(errs, res.Err.Error())
	}
	p := core.NewParser(keys)
	Parse(p)
	shown := p.Effective() + logged.String() + strings.Join(errs, "\n")
	if strings.Contains(shown, port) || !strings.Contains(shown, "127.0.0.1:*****") {
		t.Fatalf("port %s shown, or host hidden:\n%s", port, shown)
	}
	for a, want := range map[string]string{"logs3.papertrailapp.com:12345": "logs3.papertrailapp.com:*****", "tcp://h:514": "tcp://h:*****", "udp://[::1]:514": "udp://[::1]:*****", "h": "h"} {
		if got := redactAddress(a); got != want {
			t.Errorf("redactAddress(%q) = %q, want %q", a, got, want)
		}
	}
}

// listenSmallRcvBuf listens on loopback with a 4 KB receive buffer, so that a receiver that
// reads slowly or not at all holds back the sender's bytes unacknowledged within a chunk.
func listenSmallRcvBuf(t *testing.T) net.Listener {
	t.Helper()
	lc := net.ListenConfig{Control: smallRcvBuf}
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// UDP goes through the same bookkeeping as a stream: MSGs cut to max_size are counted, the
// bytes sent are counted, and a delivery clears the backoff's failures.
func TestUDPCountsLikeAStream(t *testing.T) {
	pc, err := newUDPReceiver(t)
	if err != nil {
		t.Fatal(err)
	}
	s := newSink(t, core.MapGetter{"address": "udp://" + pc.LocalAddr().String()}) // max_size 1024
	var recs []record.Record
	for i, n := range []int{10, 2000, 300, 5000} {
		body := msgp.AppendMapHeader(nil, 1)
		body = msgp.AppendString(body, "log")
		body = msgp.AppendString(body, strings.Repeat("x", n))
		recs = append(recs, record.Record{Sec: 1795694400 + int64(i), Body: body})
	}
	b := fixture.Chunk("app.x", recs)
	s.backoff.Failed(errors.New("an earlier dial failed"), false)
	s.clock = func() time.Time { return time.Now().Add(time.Minute) } // its wait is over
	res := s.Deliver(context.Background(), b)
	if res.Status != core.Delivered {
		t.Fatalf("%v %v", res.Status, res.Err)
	}
	var cut, sent int
	buf := make([]byte, 2048)
	for range b.Records {
		_ = pc.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatal(err)
		}
		sent += n
		if bytes.HasSuffix(buf[:n], []byte(core.TruncMark)) {
			cut++
		}
	}
	if cut != 2 || res.Truncated != cut {
		t.Errorf("Truncated = %d, %d datagrams arrived cut", res.Truncated, cut)
	}
	if got := testutil.ToFloat64(s.m.SyslogBytes); int(got) != sent {
		t.Errorf("bytes counted %v, sent %d", got, sent)
	}
	// One failure after a delivery waits as long as a first failure does.
	s.clock = nil
	s.backoff.Failed(errors.New("refused"), false)
	if err := s.backoff.Check("x"); err == nil || !strings.Contains(err.Error(), "after 1 failed attempts") {
		t.Errorf("after a delivery and one failure: %v", err)
	}
}
