// Package procgroup starts child processes that cannot outlive their
// purpose: each runs in a process group of its own, so a stop reaches
// whatever it starts, and on Linux the kernel kills it (Pdeathsig) if the
// process that started it dies, even by SIGKILL.
//
// # Contract
//
//   - Start processes through a Spawner (NewSpawner) to get the
//     parent-death signal: it forks from one goroutine locked to its OS
//     thread. Close it only after every process it started has exited;
//     Close waits for its goroutine. A Spawner is safe for concurrent use.
//   - Terminate asks a process's group to stop (SIGTERM), Kill ends it
//     (SIGKILL), KillGroup ends what is left of a group once its leader has
//     been reaped. They are safe for concurrent use.
//   - StartChild starts a process through a Spawner and reaps it in the
//     background: its Child tells when it has exited (Done, Exited, Err)
//     and stops it (Terminate, Reap, Stop), group and all. A Child is safe
//     for concurrent use.
//   - FreeAddrs finds free TCP ports for a child to listen on.
//
// Other Unix systems have process groups but no parent-death signal: there
// a child outlives a parent killed with SIGKILL. Systems without process
// groups (Windows) get a plain kill for every stop.
package procgroup

import (
	"errors"
	"fmt"
	"net"
	"os/exec"
	"runtime"
)

// ErrClosed: Start was called on a closed Spawner.
var ErrClosed = errors.New("procgroup: spawner closed")

// Spawner starts processes from one goroutine locked to its OS thread. On
// Linux a child's parent-death signal fires when the thread that forked it
// exits; the Go runtime only ends threads whose goroutine exits while
// locked, so a dedicated locked thread that outlives every child keeps
// Pdeathsig meaning "the parent process died".
type Spawner struct {
	reqs chan spawnReq
	stop chan struct{}
	done chan struct{}
}

type spawnReq struct {
	cmd *exec.Cmd
	err chan error
}

// NewSpawner starts a spawner's goroutine and thread. Call Close when
// every process it started has exited.
func NewSpawner() *Spawner {
	s := &Spawner{reqs: make(chan spawnReq), stop: make(chan struct{}), done: make(chan struct{})}
	go s.run()
	return s
}

func (s *Spawner) run() {
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

// Start sets cmd up to run in a process group of its own, with the
// parent-death signal where the system has one (replacing cmd.SysProcAttr),
// and starts it on the spawner's thread.
func (s *Spawner) Start(cmd *exec.Cmd) error {
	cmd.SysProcAttr = sysProcAttr()
	r := spawnReq{cmd: cmd, err: make(chan error, 1)}
	select {
	case s.reqs <- r:
		return <-r.err
	case <-s.done:
		return ErrClosed
	}
}

// Close ends the spawner's thread and waits for its goroutine. Call it
// only after every process it started has exited: on Linux the end of the
// thread kills them. Later Starts fail with ErrClosed. Close may be
// called more than once.
func (s *Spawner) Close() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
}

// FreeAddrs returns n distinct free TCP addresses (host:port) on host. They
// are free when it returns; another process may take one before the child
// binds it, which the caller must detect (the child exits with "address
// already in use").
func FreeAddrs(host string, n int) ([]string, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	addrs := make([]string, 0, n)
	for range n {
		ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return nil, fmt.Errorf("find a free port on %s: %w", host, err)
		}
		lns = append(lns, ln)
		addrs = append(addrs, ln.Addr().String())
	}
	return addrs, nil
}
