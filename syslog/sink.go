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

	// dialTurn is a token: the flush that holds it checks or replaces cur, so that flushes
	// finding no connection wait for one dial instead of each making its own.
	dialTurn chan struct{}

	mu     sync.Mutex // guards cur, closed and every conn's users
	cur    *conn      // the connection flushes share; nil before the first dial and after a failure
	closed bool
}

type buffer struct {
	b    []byte
	ends []int // where each frame ends in b
	s    *scratch
}

// Build starts a syslog sink: no connection yet (the first flush dials), but the CA file is
// read now, so that a wrong path fails Init.
func (cfg *Config) Build(env core.Env) (core.Sink, error) {
	f := cfg.f
	s := &sink{cfg: cfg, f: f, log: env.Log, m: env.Metrics, dialTurn: make(chan struct{}, 1)}
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
	s.format(b, buf)
	c, err := s.get(ctx)
	if err != nil {
		return retry(err)
	}
	defer s.release(c)
	if err := s.send(ctx, c, buf); err != nil {
		return s.failed(c, err)
	}
	s.backoff.Succeeded()
	return core.Result{Status: core.Delivered, Truncated: buf.s.truncated}
}

// format writes the batch's frames into buf, noting where each ends (a datagram each on
// UDP), and warns about MSGs that JSON could not render whole.
func (s *sink) format(b *core.Batch, buf *buffer) {
	out, ends := buf.b[:0], buf.ends[:0]
	buf.s.jsonErrs, buf.s.truncated = 0, 0
	for i := range b.Records {
		out = s.f.appendFrame(out, &b.Records[i], b.Tag, buf.s)
		ends = append(ends, len(out))
	}
	buf.b, buf.ends = out, ends
	if buf.s.jsonErrs > 0 {
		if ok, more := s.cutShort.Allow(); ok {
			s.log.Warnf("chunk (tag %s): the JSON MSG of %d records ends where msgpack could not be rendered (%v); sent as far as it goes (%d such lines held back in the last %v)",
				b.Tag, buf.s.jsonErrs, buf.s.jsonErr, more, s.cutShort.Interval)
		}
	}
}

// send hands buf's frames to c. On a stream they are written in this flush's turn and
// confirmed by the peer's acknowledgements. On UDP each is one datagram, as RFC 5426
// requires, written whole (so flushes sharing the socket need no turn) and confirmed by
// nothing.
func (s *sink) send(ctx context.Context, c *conn, buf *buffer) error {
	if c.raw == nil {
		start := 0
		for _, end := range buf.ends {
			n, err := c.Write(buf.b[start:end])
			s.m.SyslogBytes.Add(float64(n))
			if err != nil {
				return fmt.Errorf("send to %s: %w", s.cfg.addr, err)
			}
			start = end
		}
		return nil
	}
	end, err := s.write(ctx, c, buf.b)
	if err != nil {
		return err
	}
	ackStart := time.Now()
	if err := s.waitAcked(ctx, c, end, len(buf.b)); err != nil {
		return err
	}
	s.m.AckWait.Observe(time.Since(ackStart).Seconds())
	if peerClosedInOrder(c.raw) {
		s.retire(c) // everything acknowledged was delivered, but nothing more may follow
	}
	return nil
}

func retry(err error) core.Result { return core.Result{Status: core.Retry, Err: err} }

// errTimedOut marks a flush that ran out of time waiting on the peer.
var errTimedOut = errors.New("timed out")

// failed ends c and answers RETRY for a flush whose connection failed while it wrote or
// waited for the acknowledgement (or, on UDP, sent). A timeout means the destination hangs, and the next flushes
// answer at once; it counts once a connection, not once for each flush that was waiting on it.
func (s *sink) failed(c *conn, err error) core.Result {
	if s.fail(c) && timedOut(err) {
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
