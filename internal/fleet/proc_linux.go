//go:build linux

package fleet

import "syscall"

// sysProcAttr puts each instance in a process group of its own, so that a
// signal reaches whatever it starts too, and asks the kernel to SIGKILL it
// if the fleet dies first. Pdeathsig fires when the thread that started the
// process exits, which is why starts go through one locked thread (see
// spawner).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
