//go:build unix

package procgroup

import (
	"errors"
	"os"
	"syscall"
)

// Terminate asks the process group led by p to stop (SIGTERM).
func Terminate(p *os.Process) error { return signalGroup(p, syscall.SIGTERM) }

// Kill ends the process group led by p (SIGKILL).
func Kill(p *os.Process) error { return signalGroup(p, syscall.SIGKILL) }

// KillGroup kills whatever is left of the process group of pid, whose
// leader has just been reaped: a grandchild that outlived its parent
// belongs to nobody else. While such a member lives the group ID cannot be
// reused; when none is left the kill finds nothing (barring the pid being
// reused as a new group's ID within microseconds, which Linux's sequential
// pid allocation makes remote).
func KillGroup(pid int) { _ = syscall.Kill(-pid, syscall.SIGKILL) }

func signalGroup(p *os.Process, sig syscall.Signal) error {
	err := syscall.Kill(-p.Pid, sig)
	if errors.Is(err, syscall.ESRCH) {
		// The group is gone; signal the leader alone in case it never
		// became a group leader.
		err = p.Signal(sig)
		if errors.Is(err, os.ErrProcessDone) {
			return nil
		}
	}
	return err
}
