//go:build !unix

package procgroup

import (
	"os"
	"syscall"
)

// sysProcAttr has nothing to set here: no process groups, no parent-death
// signal.
func sysProcAttr() *syscall.SysProcAttr { return nil }

// Terminate cannot ask politely on this platform: it kills.
func Terminate(p *os.Process) error { return p.Kill() }

// Kill ends the process.
func Kill(p *os.Process) error { return p.Kill() }

// KillGroup has no process group to clean up here.
func KillGroup(int) {}
