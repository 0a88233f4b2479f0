package syslog

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/trailstack/trailstack/testkit/testpki"
)

func newPKI(t testing.TB, dnsName string) *testpki.PKI { return testpki.New(t, dnsName) }

// receiver is a syslog server that counts what it really read, frame by frame.
type receiver struct {
	t        testing.TB
	ln       net.Listener
	framing  framing
	tlsCfg   *tls.Config
	readStop int  // after this many bytes on a connection, reset it (0: never)
	noRead   bool // accept and never read
	idleKill bool // close each connection after its first frame has been read
	discard  bool // count nothing, keep nothing: for benchmarks
	readRate int  // bytes per second a slow link lets through (0: no limit)

	mu     sync.Mutex // guards frames, conns
	frames [][]byte
	conns  []net.Conn
	wg     sync.WaitGroup
	done   chan struct{} // closed by stop
	once   sync.Once
	frame  chan struct{} // a token per frame read
	closed chan struct{} // a token per connection the receiver closed
}

func startReceiver(t testing.TB, r *receiver) *receiver {
	t.Helper()
	r.t = t
	r.done = make(chan struct{})
	r.frame = make(chan struct{}, 1<<20)
	r.closed = make(chan struct{}, 1024)
	if r.ln == nil {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		r.ln = ln
	}
	r.wg.Add(1)
	go r.accept()
	t.Cleanup(r.stop)
	return r
}

func (r *receiver) addr() string { return r.ln.Addr().String() }

func (r *receiver) stop() {
	r.once.Do(func() { close(r.done) })
	r.ln.Close()
	r.mu.Lock()
	for _, c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

func (r *receiver) accept() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		if r.tlsCfg != nil {
			c = tls.Server(c, r.tlsCfg)
		}
		r.mu.Lock()
		r.conns = append(r.conns, c)
		r.mu.Unlock()
		r.wg.Add(1)
		go r.serve(c)
	}
}

func (r *receiver) serve(c net.Conn) {
	defer r.wg.Done()
	defer func() {
		c.Close()
		r.closed <- struct{}{}
	}()
	if r.noRead {
		if tc, ok := c.(*tls.Conn); ok {
			_ = tc.Handshake() // a TLS peer must at least finish the handshake
		}
		<-r.done
		return
	}
	if r.discard {
		_, _ = io.Copy(io.Discard, c)
		return
	}
	var src io.Reader = c
	if r.readRate > 0 {
		src = &slowReader{r: c, rate: r.readRate}
	}
	if r.readStop > 0 {
		src = io.LimitReader(c, int64(r.readStop))
	}
	br := bufio.NewReaderSize(src, 1<<20)
	for {
		frame, err := readFrame(br, r.framing)
		if err != nil {
			if r.readStop > 0 {
				// Die with unread data: the kernel answers with a reset.
				if tc, ok := c.(*tls.Conn); ok {
					c = tc.NetConn()
				}
				_ = c.(*net.TCPConn).SetLinger(0)
			}
			return
		}
		r.mu.Lock()
		r.frames = append(r.frames, frame)
		r.mu.Unlock()
		r.frame <- struct{}{}
		if r.idleKill {
			return
		}
	}
}

func readFrame(br *bufio.Reader, fr framing) ([]byte, error) {
	if fr == framingOctet {
		lenStr, err := br.ReadString(' ')
		if err != nil {
			return nil, err
		}
		n, err := strconv.Atoi(lenStr[:len(lenStr)-1])
		if err != nil {
			return nil, err
		}
		b := make([]byte, n)
		_, err = io.ReadFull(br, b)
		return b, err
	}
	line, err := br.ReadBytes('\n')
	if err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(line, []byte("\n")), nil
}

func (r *receiver) received() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]byte(nil), r.frames...)
}

// waitFrames waits until n frames arrived, or 10 s passed: the receiver's reading lags the
// sender's acknowledgement (the kernel acknowledges before the application reads).
func (r *receiver) waitFrames(n int) [][]byte {
	timeout := time.After(10 * time.Second)
	for len(r.received()) < n {
		select {
		case <-r.frame:
		case <-timeout:
			return r.received()
		}
	}
	return r.received()
}

// slowReader reads at about rate bytes per second, as a slow link delivers.
type slowReader struct {
	r    io.Reader
	rate int
}

func (s *slowReader) Read(p []byte) (int, error) {
	p = p[:min(len(p), s.rate/20)]
	n, err := s.r.Read(p)
	time.Sleep(time.Duration(n) * time.Second / time.Duration(s.rate))
	return n, err
}
