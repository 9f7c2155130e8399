//go:build linux

package procgroup

import "syscall"

// sysProcAttr puts a child in a process group of its own, so that a signal
// reaches whatever it starts too, and asks the kernel to SIGKILL it if its
// parent dies first. Pdeathsig fires when the thread that started the
// child exits, which is why starts go through a Spawner.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
