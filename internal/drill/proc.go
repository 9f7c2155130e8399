package drill

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"time"

	"github.com/spillway-dev/spillway/internal/procgroup"
)

// child is one process the drill started: the backend-sim or `spillway
// up` (whose own children, the login instances, it supervises).
type child struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has been reaped
	err  error         // its exit; read after done
}

// startChild starts bin with args through sp (in a process group of its
// own, with Pdeathsig on Linux), its output going to out, and reaps it in
// the background.
func startChild(sp *procgroup.Spawner, name, bin string, args []string, out io.Writer) (*child, error) {
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = time.Second
	if err := sp.Start(cmd); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

// exited reports whether the process has ended.
func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// stop asks the process group to stop (SIGTERM), waits up to timeout, then
// kills the group (SIGKILL) and waits for the process to be reaped.
func (c *child) stop(timeout time.Duration) {
	if !c.exited() {
		_ = procgroup.Terminate(c.cmd.Process)
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-c.done:
	case <-t.C:
		_ = procgroup.Kill(c.cmd.Process)
		<-c.done
	}
	procgroup.KillGroup(c.cmd.Process.Pid) // whatever it left behind
}

// killPID ends one process (an instance the scenario kills).
func killPID(pid int) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	return p.Kill()
}
