//go:build unix && !linux

package fleet

import "syscall"

// sysProcAttr puts each instance in a process group of its own. This
// platform has no parent-death signal: if the fleet is killed with SIGKILL
// its instances keep running.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
