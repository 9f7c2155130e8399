package drill

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"time"
)

// child is one process the drill started: the backend-sim or `spillway
// up` (whose own children, the login instances, it supervises).
type child struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has been reaped
	err  error         // its exit; read after done
}

// spawner starts processes from one goroutine locked to its OS thread: on
// Linux a child's parent-death signal fires when the thread that forked it
// ends, so a thread that outlives every child makes Pdeathsig mean "the
// drill died" (as internal/fleet does for its instances).
type spawner struct {
	reqs chan spawnReq
	stop chan struct{}
	done chan struct{}
}

type spawnReq struct {
	cmd *exec.Cmd
	err chan error
}

func newSpawner() *spawner {
	s := &spawner{reqs: make(chan spawnReq), stop: make(chan struct{}), done: make(chan struct{})}
	go s.run()
	return s
}

func (s *spawner) run() {
	defer close(s.done)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	for {
		select {
		case r := <-s.reqs:
			r.err <- r.cmd.Start()
		case <-s.stop:
			return
		}
	}
}

// close ends the spawner's thread. Call it only after every child it
// started has exited.
func (s *spawner) close() {
	close(s.stop)
	<-s.done
}

var errSpawnerClosed = errors.New("drill: spawner closed")

// start starts bin with args in a process group of its own, its output
// going to out, and reaps it in the background.
func (s *spawner) start(name, bin string, args []string, out io.Writer) (*child, error) {
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = sysProcAttr()
	cmd.WaitDelay = time.Second
	r := spawnReq{cmd: cmd, err: make(chan error, 1)}
	select {
	case s.reqs <- r:
	case <-s.done:
		return nil, errSpawnerClosed
	}
	if err := <-r.err; err != nil {
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
		_ = terminate(c.cmd.Process)
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-c.done:
	case <-t.C:
		_ = kill(c.cmd.Process)
		<-c.done
	}
	killGroup(c.cmd.Process) // whatever it left behind
}

// killPID ends one process (an instance the scenario kills).
func killPID(pid int) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	return p.Kill()
}
