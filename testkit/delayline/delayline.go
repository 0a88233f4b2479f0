// Package delayline puts a network namespace at a distance from this one: a link whose every
// packet, handshakes and TCP acknowledgements included, takes half a chosen round trip each
// way. Kernels without netem (no queueing disciplines at all) still have /dev/net/tun: the
// line owns two TUN devices, one here and one moved into the namespace, and copies each
// packet read from one into the other once its time has come.
//
// A receiver listens in the namespace (Listen); anything on this side reaches it at FarIP.
// Needs root (a namespace, TUN devices).
package delayline

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/trailstack/trailstack/testkit/fixture"
)

// Line is one link between this network namespace and a namespace of its own.
type Line struct {
	NS     string // the far namespace (ip netns)
	HostIP string // this side's address on the link
	FarIP  string // the far side's address

	rtt   time.Duration
	down  atomic.Bool // a blackhole: every packet dropped, both ways
	tuns  [2]*os.File // this side's, the far side's
	wg    sync.WaitGroup
	close sync.Once
}

// packet is one packet on its way, and when it may leave.
type packet struct {
	due time.Time
	b   []byte
}

// queueLen bounds the packets in flight one way: about 90 MB of full-size packets, far more
// than TCP keeps in flight at the rates tests use.
const queueLen = 1 << 16

// New makes namespace name and the link to it, with addresses 10.<subnet>.0.1 (here) and
// 10.<subnet>.0.2 (there), and starts copying packets with the given round trip.
func New(name string, subnet int, rtt time.Duration) (*Line, error) {
	l := &Line{NS: name, HostIP: fmt.Sprintf("10.%d.0.1", subnet), FarIP: fmt.Sprintf("10.%d.0.2", subnet), rtt: rtt}
	if err := ip("netns", "add", name); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			l.Close()
		}
	}()
	here, far := name+"h", name+"f"
	for i, dev := range []string{here, far} {
		f, err := openTUN(dev)
		if err != nil {
			return nil, err
		}
		l.tuns[i] = f
	}
	steps := [][]string{
		{"link", "set", far, "netns", name},
		{"addr", "add", l.HostIP, "peer", l.FarIP, "dev", here},
		{"link", "set", here, "up"},
		{"-n", name, "addr", "add", l.FarIP, "peer", l.HostIP, "dev", far},
		{"-n", name, "link", "set", far, "up"},
		{"-n", name, "link", "set", "lo", "up"},
	}
	for _, s := range steps {
		if err := ip(s...); err != nil {
			return nil, err
		}
	}
	l.pipe(l.tuns[0], l.tuns[1])
	l.pipe(l.tuns[1], l.tuns[0])
	ok = true
	return l, nil
}

// SetDown drops every packet both ways (true) until called with false: a link that is cut
// without either end knowing, as a route withdrawn or a firewall that drops.
func (l *Line) SetDown(down bool) { l.down.Store(down) }

// RTT is the round trip the line adds.
func (l *Line) RTT() time.Duration { return l.rtt }

// pipe copies packets from one device to the other, each half a round trip after it was read.
// One reader and one writer per direction keep packets in order, as a real link does.
func (l *Line) pipe(from, to *os.File) {
	q := make(chan packet, queueLen)
	l.wg.Add(2)
	go func() {
		defer l.wg.Done()
		defer close(q)
		for {
			b := make([]byte, 65536)
			n, err := from.Read(b)
			if err != nil {
				return
			}
			if l.down.Load() {
				continue
			}
			select {
			case q <- packet{time.Now().Add(l.rtt / 2), b[:n]}:
			default: // a full queue drops, as a full router queue would
			}
		}
	}()
	go func() {
		defer l.wg.Done()
		for p := range q {
			if d := time.Until(p.due); d > 0 {
				time.Sleep(d)
			}
			if _, err := to.Write(p.b); err != nil && errors.Is(err, os.ErrClosed) {
				return
			}
		}
	}()
}

// Close removes the link and the namespace (the devices go with their descriptors).
func (l *Line) Close() {
	l.close.Do(func() {
		for _, f := range l.tuns {
			if f != nil {
				f.Close()
			}
		}
		l.wg.Wait()
		_ = ip("netns", "del", l.NS)
	})
}

// Listen opens a listener inside the far namespace: a socket belongs to the namespace of the
// thread that made it, and stays there.
func (l *Line) Listen(lc *net.ListenConfig, network, addr string) (net.Listener, error) {
	var ln net.Listener
	err := l.Do(func() error {
		var err error
		if lc == nil {
			lc = &net.ListenConfig{}
		}
		ln, err = lc.Listen(context.Background(), network, addr)
		return err
	})
	return ln, err
}

// Do runs f on a thread inside the far namespace.
func (l *Line) Do(f func() error) error { return InNetns(l.NS, f) }

// InNetns runs f on a thread inside network namespace ns (ip netns): what f opens belongs to
// that namespace, and stays there.
func InNetns(ns string, f func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		return err
	}
	defer orig.Close()
	target, err := os.Open("/var/run/netns/" + ns)
	if err != nil {
		return err
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		return err
	}
	ferr := f()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		panic("cannot return to the original network namespace: " + err.Error())
	}
	return ferr
}

// Command is a command to run inside the far namespace (ip netns exec).
func (l *Line) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", l.NS, name}, args...)...)
}

// openTUN creates a TUN device (IP packets, no extra header) owned by the returned file,
// non-blocking so that Go's poller serves it and Close ends a pending read.
func openTUN(name string) (*os.File, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("TUNSETIFF %s: %w", name, err)
	}
	return os.NewFile(uintptr(fd), name), nil
}

func ip(args ...string) error {
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("ip %v: %v: %s", args, err, out)
	}
	return nil
}

// Start makes a line for a test (namespace prefix+pid), removed when the test ends. Without
// root or TUN devices the test skips, or fails under CI=true (fixture.Need).
func Start(tb testing.TB, prefix string, subnet int, rtt time.Duration) *Line {
	tb.Helper()
	if os.Geteuid() != 0 {
		fixture.Need(tb, "needs root for a network namespace and TUN devices")
	}
	l, err := New(fmt.Sprintf("%s%d", prefix, os.Getpid()%100000), subnet, rtt)
	if err != nil {
		fixture.Need(tb, "a delay line: %v", err)
	}
	tb.Cleanup(l.Close)
	return l
}
