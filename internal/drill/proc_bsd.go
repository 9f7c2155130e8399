//go:build unix && !linux

package drill

import "syscall"

// sysProcAttr puts a child in a process group of its own. This platform has
// no parent-death signal: children of a drill killed with SIGKILL live on.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
