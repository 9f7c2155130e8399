//go:build unix

package drill

import (
	"errors"
	"os"
	"syscall"
)

// terminate sends SIGTERM to the process group led by p.
func terminate(p *os.Process) error { return signalGroup(p, syscall.SIGTERM) }

// kill sends SIGKILL to the process group led by p.
func kill(p *os.Process) error { return signalGroup(p, syscall.SIGKILL) }

// killGroup kills whatever is left of p's process group once p is reaped.
func killGroup(p *os.Process) { _ = syscall.Kill(-p.Pid, syscall.SIGKILL) }

func signalGroup(p *os.Process, sig syscall.Signal) error {
	err := syscall.Kill(-p.Pid, sig)
	if errors.Is(err, syscall.ESRCH) {
		err = p.Signal(sig)
		if errors.Is(err, os.ErrProcessDone) {
			return nil
		}
	}
	return err
}
