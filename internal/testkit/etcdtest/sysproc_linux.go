package etcdtest

import "syscall"

// sysProcAttr has the kernel kill etcd if the test process dies first, so
// a crashed test leaves no etcd behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
