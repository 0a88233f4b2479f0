package syslog

import (
	"errors"
	"syscall"

	"golang.org/x/sys/unix"
)

// peerState reports, without blocking, whether the peer has closed the connection or sent
// anything: a syslog receiver never sends application data, so any byte waiting to be read
// is either TLS housekeeping (a session ticket), an alert, or end of stream.
func peerState(raw syscall.RawConn) (closed, pending bool, err error) {
	var n int
	var rerr error
	cerr := raw.Read(func(fd uintptr) bool {
		var b [1]byte
		n, _, rerr = unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		return true
	})
	switch {
	case cerr != nil:
		return true, false, cerr
	case errors.Is(rerr, unix.EAGAIN):
		return false, false, nil
	case rerr != nil:
		return true, false, rerr
	case n == 0:
		return true, false, nil
	}
	return false, true, nil
}

// sentEnd returns where the stream ends now in the count of acknowledged bytes: the bytes
// the peer has acknowledged (tcpi_bytes_acked) plus those it has not (SIOCOUTQ: written and
// not yet acknowledged). Read as acked, queued, acked until the two acked agree, so that an
// acknowledgement arriving in between cannot make the end look nearer or farther than it is.
func sentEnd(raw syscall.RawConn) (end uint64, err error) {
	cerr := raw.Control(func(fd uintptr) {
		for {
			var a1, a2 *unix.TCPInfo
			var q int
			if a1, err = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); err != nil {
				return
			}
			if q, err = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ); err != nil {
				return
			}
			if a2, err = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); err != nil {
				return
			}
			if a1.Bytes_acked == a2.Bytes_acked {
				end = a2.Bytes_acked + uint64(q)
				return
			}
		}
	})
	if cerr != nil {
		return 0, cerr
	}
	return end, err
}

// ackState returns how many bytes the peer's TCP has acknowledged on the connection so far
// (tcpi_bytes_acked: Linux 4.1 and later), and whether the connection is still one that can
// acknowledge more.
func ackState(raw syscall.RawConn) (acked uint64, usable bool, err error) {
	var state uint8
	cerr := raw.Control(func(fd uintptr) {
		var info *unix.TCPInfo
		if info, err = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); err != nil {
			return
		}
		acked, state = info.Bytes_acked, info.State
		var soerr int
		if soerr, err = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR); err == nil && soerr != 0 {
			err = syscall.Errno(soerr)
		}
	})
	if cerr != nil {
		return 0, false, cerr
	}
	// ESTABLISHED, or CLOSE_WAIT: the peer closed in order after reading what we sent
	// (a close with unread data sends a reset instead).
	return acked, state == unix.BPF_TCP_ESTABLISHED || state == unix.BPF_TCP_CLOSE_WAIT, err
}

// peerClosedInOrder tells whether the peer has sent its FIN (the connection must not be
// reused even though what it acknowledged was delivered).
func peerClosedInOrder(raw syscall.RawConn) bool {
	var state uint8
	_ = raw.Control(func(fd uintptr) {
		if info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); err == nil {
			state = info.State
		}
	})
	return state != unix.BPF_TCP_ESTABLISHED
}

// setCork holds (on) or lets go (off) partial segments, so that the TLS records of a flush
// leave in full segments rather than one or more per record.
func setCork(raw syscall.RawConn, on bool) error {
	v := 0
	if on {
		v = 1
	}
	var err error
	if cerr := raw.Control(func(fd uintptr) { err = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_CORK, v) }); cerr != nil {
		return cerr
	}
	return err
}
