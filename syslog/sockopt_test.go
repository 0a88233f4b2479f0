package syslog

import (
	"net"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// smallRcvBuf makes accepted sockets take little before they stop acknowledging, so that a
// receiver that never reads stalls the sender quickly.
func smallRcvBuf(network, address string, c syscall.RawConn) error {
	var err error
	_ = c.Control(func(fd uintptr) { err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 4096) })
	return err
}

func newUDPReceiver(t *testing.T) (net.PacketConn, error) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err == nil {
		t.Cleanup(func() { pc.Close() })
	}
	return pc, err
}
