package syslog

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// One connection carries every flush of a sink. Flushes take turns to write (each one's
// frames go out whole), then each waits only until the peer's TCP has acknowledged its own
// last byte. So flushes on several workers overlap their round trips on one connection
// instead of each holding a connection for one: at 150 ms, a flush still takes a round trip,
// but as many run at once as Fluent Bit has workers.

// Acknowledgement polling: start fine (loopback and LAN acknowledge in microseconds), back
// off to a few milliseconds for slow links, so a wait overshoots a long round trip by at
// most ackPollMax.
const (
	ackPollMin = 50 * time.Microsecond
	ackPollMax = 5 * time.Millisecond
)

func nextAckPoll(d time.Duration) time.Duration { return min(2*d, ackPollMax) }

// writeSegment is how much of a flush's buffer one write hands the socket: the write
// deadline is renewed between segments, so write_timeout bounds a stall, not a slow link.
const writeSegment = 64 << 10

// conn is the shared connection with the raw socket beside it, for the acknowledgement checks.
type conn struct {
	net.Conn
	nc  net.Conn // the socket under TLS
	raw syscall.RawConn
	tls bool

	turn   chan struct{} // a token: the flush holding it writes
	failed atomic.Bool   // a write or a wait failed on it: no flush may write to it again
	users  int           // flushes holding it; guarded by the sink's mu

	dmu sync.Mutex // guards the write deadline, set by the writer and by its cancellation
}

// abort closes a failed connection at once: no TLS close_notify, which could block on a
// peer that no longer reads, and a reset rather than a FIN, so that the kernel drops what is
// still queued instead of delivering a stale half of the chunk later.
func (c *conn) abort() {
	if tc, ok := c.nc.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.nc.Close()
}

// write hands out to the kernel in its turn and returns where its last byte ends in the
// stream, as the peer's acknowledgements count it.
func (s *sink) write(ctx context.Context, c *conn, out []byte) (end uint64, err error) {
	select {
	case c.turn <- struct{}{}:
	case <-ctx.Done():
		return 0, fmt.Errorf("waiting to write to %s: %w", s.cfg.addr, ctx.Err())
	}
	defer func() { <-c.turn }()
	if c.failed.Load() {
		return 0, fmt.Errorf("connection to %s failed while this flush waited to write", s.cfg.addr)
	}
	// A cancelled or expired flush unblocks its own write at once, and no later one's: the
	// turn passes on only once the cancellation can no longer touch the deadline.
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		c.dmu.Lock()
		_ = c.SetWriteDeadline(time.Now())
		c.dmu.Unlock()
		close(fired)
	})
	defer func() {
		if !stop() {
			<-fired
		}
	}()
	if c.tls {
		// TLS writes each record of at most 16 KiB on its own: corked, the socket sends them
		// in full segments, which costs the kernel a fraction of the work (docs/benchmarks.md).
		// Let go when the write returns: the end sentEnd reads counts bytes held back too.
		if err := setCork(c.raw, true); err == nil {
			defer func() { _ = setCork(c.raw, false) }()
		}
	}
	for off := 0; off < len(out); {
		seg := min(off+writeSegment, len(out))
		c.dmu.Lock()
		err := ctx.Err() // under dmu: the cancellation either sees this deadline or this sees it
		if err == nil {
			err = c.SetWriteDeadline(time.Now().Add(s.cfg.writeTimeout))
		}
		c.dmu.Unlock()
		if err == nil {
			var n int
			n, err = c.Write(out[off:seg])
			off += n
			s.m.SyslogBytes.Add(float64(n))
		}
		if err != nil {
			return 0, fmt.Errorf("write to %s (%d of %d bytes written): %w", s.cfg.addr, off, len(out), err)
		}
	}
	end, err = sentEnd(c.raw)
	if err != nil {
		return 0, fmt.Errorf("connection to %s failed after writing %d bytes: %w", s.cfg.addr, len(out), err)
	}
	return end, nil
}

// waitAcked polls the peer's acknowledged byte count until it reaches end, within
// ack_timeout of the last progress (bytes of any flush acknowledged).
func (s *sink) waitAcked(ctx context.Context, c *conn, end uint64, wrote int) error {
	deadline := s.now().Add(s.cfg.ackTimeout)
	var last uint64
	poll := ackPollMin
	for {
		acked, usable, err := ackState(c.raw)
		if err != nil {
			return fmt.Errorf("connection to %s failed before acknowledging %d bytes: %w", s.cfg.addr, wrote, err)
		}
		if acked >= end {
			return nil // counted by the peer's own acknowledgements: delivered whatever follows
		}
		if !usable {
			return fmt.Errorf("connection to %s was reset or closed before acknowledging %d bytes", s.cfg.addr, wrote)
		}
		if acked > last {
			last, deadline = acked, s.now().Add(s.cfg.ackTimeout) // the peer is acknowledging
		}
		if s.now().After(deadline) {
			return fmt.Errorf("%d of %d bytes not acknowledged by %s within ack_timeout %v: %w", min(end-acked, uint64(wrote)), wrote, s.cfg.addr, s.cfg.ackTimeout, errTimedOut)
		}
		t := time.NewTimer(poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("waiting for %s to acknowledge %d bytes: %w", s.cfg.addr, wrote, ctx.Err())
		case <-t.C:
		}
		poll = nextAckPoll(poll)
	}
}

// get returns the shared connection, after checking that the peer has not closed it, or
// dials a new one. The caller releases it.
func (s *sink) get(ctx context.Context) (*conn, error) {
	select {
	case s.dialTurn <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for a connection to %s: %w", s.cfg.addr, ctx.Err())
	}
	defer func() { <-s.dialTurn }()
	// Checked in the turn too: a dial that failed while this flush waited marked the
	// destination dead.
	if err := s.backoff.Check(s.cfg.addr); err != nil {
		return nil, err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, errors.New("sink is closed")
	}
	c := s.cur
	if c != nil {
		c.users++
	}
	s.mu.Unlock()
	if c != nil {
		if !c.failed.Load() && s.usable(c) {
			return c, nil
		}
		s.retire(c)
		s.release(c)
	}

	c, err := s.dial(ctx)
	s.m.SyslogConnects(connectResult(err)).Inc()
	if err != nil {
		s.backoff.Failed(err, timedOut(err))
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		c.abort()
		return nil, errors.New("sink is closed")
	}
	c.users, s.cur = 1, c
	return c, nil
}

// release is a flush done with c; a connection no longer current closes with its last user.
func (s *sink) release(c *conn) {
	s.mu.Lock()
	c.users--
	orphan := c.users == 0 && s.cur != c
	s.mu.Unlock()
	if orphan {
		c.abort()
	}
}

// retire stops new flushes from taking c; those holding it finish their waits.
func (s *sink) retire(c *conn) {
	s.mu.Lock()
	if s.cur == c {
		s.cur = nil
	}
	s.mu.Unlock()
}

// fail ends c at once: every flush still waiting on it answers RETRY, as none of their bytes
// past the last acknowledgement can be counted on. It reports whether this call ended it.
func (s *sink) fail(c *conn) (first bool) {
	first = c.failed.CompareAndSwap(false, true)
	s.retire(c)
	c.abort()
	return first
}

// usable checks, before a flush writes, that the peer has not closed the connection.
func (s *sink) usable(c *conn) bool {
	if c.raw == nil {
		return true // UDP
	}
	closed, pending, err := peerState(c.raw)
	if closed || err != nil {
		return false
	}
	if pending && c.tls {
		// Let TLS consume what arrived (a session ticket is harmless; an alert or EOF is
		// not). Only the holder of dialTurn reads.
		var b [256]byte
		_ = c.SetReadDeadline(time.Now().Add(time.Millisecond))
		n, err := c.Read(b[:])
		_ = c.SetReadDeadline(time.Time{})
		var ne net.Error
		return n == 0 && errors.As(err, &ne) && ne.Timeout()
	}
	return !pending
}

func (s *sink) dial(ctx context.Context) (*conn, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.dialTimeout)
	defer cancel()
	d := net.Dialer{KeepAlive: s.cfg.keepalive}
	if s.cfg.keepalive == 0 {
		d.KeepAlive = -1
	}
	nc, err := d.DialContext(ctx, s.cfg.network, s.cfg.addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", s.cfg.addr, err)
	}
	c := &conn{Conn: nc, nc: nc, turn: make(chan struct{}, 1)}
	if tc, ok := nc.(*net.TCPConn); ok {
		if c.raw, err = tc.SyscallConn(); err != nil {
			nc.Close()
			return nil, err
		}
	}
	if s.tlsConf != nil {
		tc := tls.Client(nc, s.tlsConf)
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return nil, &tlsHandshakeError{fmt.Errorf("TLS handshake with %s: %w", s.cfg.addr, err)}
		}
		c.Conn, c.tls = tc, true
	}
	return c, nil
}

// Close closes the connection if no flush holds it (the instance waits for its flushes
// first); one still held closes with its last flush.
func (s *sink) Close() error {
	s.mu.Lock()
	s.closed = true
	c := s.cur
	s.cur = nil
	idle := c != nil && c.users == 0
	s.mu.Unlock()
	if idle {
		// A TLS close_notify tells the receiver the stream ended cleanly; bounded, since
		// every flush on it ended acknowledged or failed.
		_ = c.SetDeadline(time.Now().Add(time.Second))
		_ = c.Close()
	}
	return nil
}
