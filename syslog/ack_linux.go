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

// unacked returns how many bytes written to the socket the peer's TCP has not acknowledged
// (SIOCOUTQ), and whether the connection is still one whose acknowledgements mean delivery:
// a reset purges the send queue, so a zero count alone could hide a loss.
func unacked(raw syscall.RawConn) (n int, usable bool, err error) {
	var state uint8
	cerr := raw.Control(func(fd uintptr) {
		if n, err = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ); err != nil {
			return
		}
		var info *unix.TCPInfo
		if info, err = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); err != nil {
			return
		}
		state = info.State
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
	return n, state == unix.BPF_TCP_ESTABLISHED || state == unix.BPF_TCP_CLOSE_WAIT, err
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
