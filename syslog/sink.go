// Package syslog is trailstack's syslog destination: RFC 5424 messages over TLS (Papertrail's
// default), TCP or UDP, with a flush confirmed only once the peer's TCP has acknowledged
// every byte of it.
package syslog

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/trailstack/trailstack/core"
	"github.com/trailstack/trailstack/metrics"
)

// Acknowledgement polling: start fine (loopback and LAN acknowledge in microseconds), back
// off to a few milliseconds for slow links.
const (
	ackPollMin = 50 * time.Microsecond
	ackPollMax = 5 * time.Millisecond
)

func nextAckPoll(d time.Duration) time.Duration { return min(2*d, ackPollMax) }

type sink struct {
	clock   core.Clock // of acknowledgement deadlines and of the backoff
	cfg     *Config
	f       *formatter
	log     *core.Logger
	tlsConf *tls.Config
	bufs    sync.Pool // *buffer

	backoff  core.Backoff
	cutShort core.Every // one log line per interval about MSGs cut short
	m        *metrics.Instance

	mu     sync.Mutex // guards idle and closed
	idle   []*conn
	closed bool
}

type buffer struct {
	b []byte
	s *scratch
}

// conn is one connection with the raw socket beside it, for the acknowledgement checks.
type conn struct {
	net.Conn
	nc  net.Conn // the socket under TLS
	raw syscall.RawConn
	tls bool
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

// Build starts a syslog sink: no connection yet (the first flush dials), but the CA file is
// read now, so that a wrong path fails Init.
func (cfg *Config) Build(env core.Env) (core.Sink, error) {
	f := cfg.f
	s := &sink{cfg: cfg, f: f, log: env.Log, m: env.Metrics}
	if s.m == nil {
		s.m = metrics.NewInstance("unnamed", "syslog")
	}
	s.backoff.Clock, s.cutShort.Clock = s.now, s.now
	s.cutShort.Interval = 10 * time.Second
	s.bufs.New = func() any { return &buffer{b: make([]byte, 0, 64<<10), s: f.newScratch()} }
	if cfg.useTLS {
		s.tlsConf = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: cfg.serverName, InsecureSkipVerify: cfg.insecureSkipVerify}
		if cfg.caFile != "" {
			pem, err := os.ReadFile(cfg.caFile)
			if err != nil {
				return nil, core.KeyError("ca_file", "%v", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, core.KeyError("ca_file", "no PEM certificates in %s", cfg.caFile)
			}
			s.tlsConf.RootCAs = pool
		}
		if cfg.insecureSkipVerify {
			env.Log.Warnf("insecure_skip_verify is on: the server's certificate is not checked, so anyone on the path can read and drop these logs")
		}
	}
	if cfg.network == "udp" {
		env.Log.Warnf("UDP is best effort: a datagram lost on the way is lost for good, and a flush answers OK once its datagrams are sent")
	}
	return s, nil
}

func (s *sink) now() time.Time { return s.clock.Now() }

// writeSegment is how much of a flush's buffer one write hands the socket: the write
// deadline is renewed between segments, so write_timeout bounds a stall, not a slow link.
const writeSegment = 64 << 10

// Deliver formats the batch into one buffer, writes it, and answers Delivered once the
// peer's TCP has acknowledged every byte. write_timeout and ack_timeout bound how long the
// peer may take no byte and acknowledge none: a slow link that keeps moving delivers. The
// whole flush, dial included, ends within flush_timeout: the shutdown budget in conf/ rests
// on that bound.
func (s *sink) Deliver(ctx context.Context, b *core.Batch) core.Result {
	res := s.deliver(ctx, b)
	if res.Err != nil {
		if _, port, err := net.SplitHostPort(s.cfg.addr); err == nil {
			res.Err = redactPort{res.Err, ":" + port}
		}
	}
	return res
}

func (s *sink) deliver(ctx context.Context, b *core.Batch) core.Result {
	// While the destination is known dead, answer before formatting anything.
	if err := s.backoff.Check(s.cfg.addr); err != nil {
		return retry(err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.flushTimeout)
	defer cancel()
	buf := s.bufs.Get().(*buffer)
	defer func() {
		clear(buf.s.vals) // they point into the chunk, which is Fluent Bit's again after the flush
		s.bufs.Put(buf)
	}()
	if s.cfg.network == "udp" {
		return s.deliverUDP(ctx, b, buf)
	}
	out := buf.b[:0]
	buf.s.jsonErrs, buf.s.truncated = 0, 0
	for i := range b.Records {
		out = s.f.appendFrame(out, &b.Records[i], b.Tag, buf.s)
	}
	buf.b = out
	if buf.s.jsonErrs > 0 {
		if ok, more := s.cutShort.Allow(); ok {
			s.log.Warnf("chunk (tag %s): the JSON MSG of %d records ends where msgpack could not be rendered (%v); sent as far as it goes (%d such lines held back in the last %v)",
				b.Tag, buf.s.jsonErrs, buf.s.jsonErr, more, s.cutShort.Interval)
		}
	}

	c, err := s.get(ctx)
	if err != nil {
		return retry(err)
	}
	// A cancelled or expired flush unblocks the write at once.
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	for off := 0; off < len(out); {
		end := min(off+writeSegment, len(out))
		err := ctx.Err() // checked before each new deadline, which would undo the cancel's
		if err == nil {
			err = c.SetWriteDeadline(time.Now().Add(s.cfg.writeTimeout))
		}
		if err == nil {
			var n int
			n, err = c.Write(out[off:end])
			off += n
			s.m.SyslogBytes.Add(float64(n))
		}
		if err != nil {
			stop()
			c.abort()
			return s.failed(fmt.Errorf("write to %s (%d of %d bytes written): %w", s.cfg.addr, off, len(out), err))
		}
	}
	ackStart := time.Now()
	if err := s.waitAcked(ctx, c, len(out)); err != nil {
		stop()
		c.abort()
		return s.failed(err)
	}
	s.m.AckWait.Observe(time.Since(ackStart).Seconds())
	// Acknowledged: delivered. The connection goes back to the pool only if the
	// cancellation cannot touch its deadline any more.
	if stop() {
		s.put(c)
	} else {
		c.abort()
	}
	s.backoff.Succeeded()
	return core.Result{Status: core.Delivered, Truncated: buf.s.truncated}
}

func retry(err error) core.Result { return core.Result{Status: core.Retry, Err: err} }

// errTimedOut marks a flush that ran out of time waiting on the peer.
var errTimedOut = errors.New("timed out")

// failed answers RETRY for a connection that failed while writing or waiting for the
// acknowledgement; a timeout means the destination hangs, and the next flushes answer at once.
func (s *sink) failed(err error) core.Result {
	if timedOut(err) {
		s.backoff.Failed(err, true)
	}
	return retry(err)
}

// connectResult names a dial's outcome for trailstack_syslog_connects_total.
func connectResult(err error) string {
	var tlsErr *tlsHandshakeError
	switch {
	case err == nil:
		return "ok"
	case timedOut(err):
		return "timeout"
	case errors.As(err, &tlsErr):
		return "tls"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	}
	return "error"
}

// tlsHandshakeError is a connection made but refused at TLS (certificate, name, protocol).
type tlsHandshakeError struct{ err error }

func (e *tlsHandshakeError) Error() string { return e.err.Error() }
func (e *tlsHandshakeError) Unwrap() error { return e.err }

// timedOut tells a destination that accepts but does not answer (TLS handshake, write or
// acknowledgement timed out) from one that refuses. A cancelled flush (shutdown) is neither.
func timedOut(err error) bool {
	var ne net.Error
	return errors.Is(err, errTimedOut) || errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

func (s *sink) deliverUDP(ctx context.Context, b *core.Batch, buf *buffer) core.Result {
	c, err := s.get(ctx)
	if err != nil {
		return retry(err)
	}
	for i := range b.Records {
		// One message per datagram, as RFC 5426 requires.
		buf.b = s.f.appendFrame(buf.b[:0], &b.Records[i], b.Tag, buf.s)
		if _, err := c.Write(buf.b); err != nil {
			c.abort()
			return retry(fmt.Errorf("send to %s: %w", s.cfg.addr, err))
		}
	}
	s.put(c)
	return core.Result{Status: core.Delivered}
}

// waitAcked polls the socket's unacknowledged byte count down to zero, within ack_timeout
// of the last progress.
func (s *sink) waitAcked(ctx context.Context, c *conn, wrote int) error {
	deadline := s.now().Add(s.cfg.ackTimeout)
	last := wrote + 1
	poll := ackPollMin
	for {
		n, usable, err := unacked(c.raw)
		if err != nil {
			return fmt.Errorf("connection to %s failed before acknowledging %d bytes: %w", s.cfg.addr, wrote, err)
		}
		if !usable {
			return fmt.Errorf("connection to %s was reset or closed before acknowledging %d bytes", s.cfg.addr, wrote)
		}
		if n == 0 {
			return nil
		}
		if n < last {
			last, deadline = n, s.now().Add(s.cfg.ackTimeout) // the peer is acknowledging
		}
		if s.now().After(deadline) {
			return fmt.Errorf("%d of %d bytes not acknowledged by %s within ack_timeout %v: %w", n, wrote, s.cfg.addr, s.cfg.ackTimeout, errTimedOut)
		}
		t := time.NewTimer(poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("waiting for %s to acknowledge %d of %d bytes: %w", s.cfg.addr, n, wrote, ctx.Err())
		case <-t.C:
		}
		poll = nextAckPoll(poll)
	}
}

// get returns an idle connection that the peer has not closed, or dials a new one.
func (s *sink) get(ctx context.Context) (*conn, error) {
	if err := s.backoff.Check(s.cfg.addr); err != nil {
		return nil, err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, errors.New("sink is closed")
	}
	for len(s.idle) > 0 {
		c := s.idle[len(s.idle)-1]
		s.idle = s.idle[:len(s.idle)-1]
		s.mu.Unlock()
		if s.usable(c) {
			return c, nil
		}
		c.abort()
		s.mu.Lock()
	}
	s.mu.Unlock()

	c, err := s.dial(ctx)
	s.m.SyslogConnects(connectResult(err)).Inc()
	if err != nil {
		s.backoff.Failed(err, timedOut(err))
		return nil, err
	}
	return c, nil
}

// usable checks, before reuse, that the peer has not closed the connection while it was idle.
func (s *sink) usable(c *conn) bool {
	if c.raw == nil {
		return true // UDP
	}
	closed, pending, err := peerState(c.raw)
	if closed || err != nil {
		return false
	}
	if pending && c.tls {
		// Let TLS consume what arrived (a session ticket is harmless; an alert or EOF is not).
		var b [256]byte
		_ = c.SetReadDeadline(time.Now().Add(time.Millisecond))
		n, err := c.Read(b[:])
		_ = c.SetReadDeadline(time.Time{})
		var ne net.Error
		return n == 0 && errors.As(err, &ne) && ne.Timeout()
	}
	return !pending
}

func (s *sink) put(c *conn) {
	if c.raw != nil && peerClosedInOrder(c.raw) {
		c.abort()
		return
	}
	_ = c.SetDeadline(time.Time{})
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		c.abort()
		return
	}
	s.idle = append(s.idle, c)
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
	c := &conn{Conn: nc, nc: nc}
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

// Close closes the idle connections; those in use are closed by their flush.
func (s *sink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for _, c := range s.idle {
		// A TLS close_notify tells the receiver the stream ended cleanly; bounded, since
		// the peer acknowledged everything before the connection went idle.
		_ = c.SetDeadline(time.Now().Add(time.Second))
		_ = c.Close()
	}
	s.idle = nil
	return nil
}
