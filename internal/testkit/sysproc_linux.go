package testkit

import "syscall"

// sysProcAttr has the kernel kill a Daemon's process if the test process
// dies first, so a crashed test leaves none behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
