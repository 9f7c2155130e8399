//go:build !unix

package drill

import (
	"os"
	"syscall"
)

// sysProcAttr has nothing to set here: no process groups.
func sysProcAttr() *syscall.SysProcAttr { return nil }

// terminate cannot ask politely on this platform: it kills.
func terminate(p *os.Process) error { return p.Kill() }

// kill ends the process.
func kill(p *os.Process) error { return p.Kill() }

// killGroup has no process group to clean up here.
func killGroup(*os.Process) {}
