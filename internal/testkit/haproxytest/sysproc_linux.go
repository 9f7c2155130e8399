package haproxytest

import "syscall"

// sysProcAttr has the kernel kill haproxy if the test process dies first, so
// a crashed test leaves no haproxy behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
