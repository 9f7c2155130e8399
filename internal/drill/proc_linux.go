//go:build linux

package drill

import "syscall"

// sysProcAttr puts a child in a process group of its own, so a stop reaches
// everything it started, and asks the kernel to SIGKILL it if the drill
// dies first, even by SIGKILL. `spillway up` does the same for its login
// instances, so nothing outlives the drill.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
