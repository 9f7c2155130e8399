//go:build unix && !linux

package procgroup

import "syscall"

// sysProcAttr puts a child in a process group of its own. This platform has
// no parent-death signal: if the parent is killed with SIGKILL its children
// keep running.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
