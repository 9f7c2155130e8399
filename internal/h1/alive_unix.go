//go:build unix

package h1

import (
	"crypto/tls"
	"net"
	"syscall"
)

// alive reports whether an idle connection is still open and quiet: a
// peek that would block. EOF (the instance closed it), an error, or bytes
// nobody asked for all say it must not carry a request.
func alive(nc net.Conn) bool {
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return true
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	open := false
	var b [1]byte
	err = raw.Read(func(fd uintptr) bool {
		_, _, rerr := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		open = rerr == syscall.EAGAIN || rerr == syscall.EWOULDBLOCK
		return true // one look, never a wait
	})
	return err == nil && open
}
