package procgroup

import (
	"os"
	"os/exec"
	"time"
)

// Child is a process started by a Spawner (StartChild) and reaped in the
// background: Done is closed once it has been, and Err is then its exit.
// Its methods are safe for concurrent use.
type Child struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error // Wait's, written before done is closed
}

// StartChild starts cmd (Start) and reaps it in a goroutine of its own,
// which calls reaped, if not nil, once cmd.Wait has returned (to close an
// output file, say) and then closes Done.
func (s *Spawner) StartChild(cmd *exec.Cmd, reaped func()) (*Child, error) {
	if err := s.Start(cmd); err != nil {
		return nil, err
	}
	c := &Child{cmd: cmd, done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		if reaped != nil {
			reaped()
		}
		close(c.done)
	}()
	return c, nil
}

// Signal sends sig to the process (not its group); after the reap it
// returns os.ErrProcessDone.
func (c *Child) Signal(sig os.Signal) error { return c.cmd.Process.Signal(sig) }

// PID is the process's id, which is also its group's.
func (c *Child) PID() int { return c.cmd.Process.Pid }

// Done is closed once the process has been reaped.
func (c *Child) Done() <-chan struct{} { return c.done }

// Err is the process's exit (nil: status 0); valid once Done is closed.
func (c *Child) Err() error { return c.err }

// Exited reports whether the process has been reaped.
func (c *Child) Exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// Terminate asks the process's group to stop (SIGTERM), unless the
// process has been reaped.
func (c *Child) Terminate() {
	if !c.Exited() {
		_ = Terminate(c.cmd.Process)
	}
}

// Reap waits until deadline for the process to exit, then kills its
// group (SIGKILL); once the process has been reaped it kills whatever is
// left of the group (KillGroup).
func (c *Child) Reap(deadline time.Time) {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-c.done:
	case <-t.C:
		_ = Kill(c.cmd.Process)
		<-c.done
	}
	KillGroup(c.cmd.Process.Pid) // whatever it left behind
}

// Stop is Terminate, then Reap with timeout from now.
func (c *Child) Stop(timeout time.Duration) {
	c.Terminate()
	c.Reap(time.Now().Add(timeout))
}
