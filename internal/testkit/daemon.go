//go:build unix

package testkit

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// Binary returns the path of a system binary a test needs: path (where
// Debian's package installs it), else name on PATH. It skips t when there
// is none, or fails it in CI (CI=true), which installs the Debian package
// pkg.
func Binary(t testing.TB, path, name, pkg string) string {
	t.Helper()
	if _, err := os.Stat(path); err == nil {
		return path
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("no %s and no %s on PATH in CI (apt-get install %s)", path, name, pkg)
	}
	t.Skipf("no %s and no %s on PATH: apt-get install %s to run this test", path, name, pkg)
	return ""
}

// Daemon is a server process that a test runs (etcd, HAProxy), maybe more
// than once: each Restart runs a new process from the same command line,
// and the output of all of them is kept in one buffer, each start marked,
// and logged if the test fails. On Linux the kernel kills the process if
// the test process dies first. A Daemon belongs to the test that made it:
// call its methods from the test's goroutine; those that wait fail the
// test.
type Daemon struct {
	t       testing.TB
	name    string
	what    string
	timeout time.Duration
	command func() *exec.Cmd
	ready   func(*exec.Cmd) bool

	out     SyncBuffer
	cmd     *exec.Cmd
	done    chan struct{} // closed when cmd has been waited for
	started int
}

// NewDaemon returns a Daemon named name (for messages) that has not
// started; label says which one it is, an address or a file. Each start
// runs the command that command returns and waits up to timeout for
// ready, called with that command, to return true; what says what ready
// waits for. When the test ends, once the cleanups registered after this
// call have run (the caller registers the Daemon's stop, Stop or Kill,
// after it), it logs the output if t failed.
func NewDaemon(t testing.TB, name, label string, timeout time.Duration, what string, command func() *exec.Cmd, ready func(*exec.Cmd) bool) *Daemon {
	d := &Daemon{t: t, name: name, what: what, timeout: timeout, command: command, ready: ready}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s (%s) output:\n%s", name, label, d.out.String())
		}
	})
	return d
}

// Restart stops the process, if it runs (Stop), starts a new one, its
// output going to the Daemon's, and waits until it is ready, polling
// every PollInterval; the first start is a Restart too. It fails the test
// if the process cannot start, exits first, or is not ready in time
// (killing it then).
func (d *Daemon) Restart() {
	d.t.Helper()
	d.Stop()
	d.started++
	fmt.Fprintf(&d.out, "--- %s start #%d\n", d.name, d.started)
	cmd := d.command()
	cmd.Stdout, cmd.Stderr = &d.out, &d.out
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		d.t.Fatalf("start %s: %v", d.name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }() // ends with the process, which Stop and Kill end
	d.cmd, d.done = cmd, done

	deadline := time.Now().Add(d.timeout)
	for {
		if !d.Running() {
			d.t.Fatalf("%s exited at start:\n%s", d.name, d.out.String())
		}
		if d.ready(cmd) {
			return
		}
		if time.Now().After(deadline) {
			d.Kill()
			d.t.Fatalf("%s did not %s within %v:\n%s", d.name, d.what, d.timeout, d.out.String())
		}
		time.Sleep(PollInterval) // polling a real process
	}
}

// Running reports whether the process of the last Start runs.
func (d *Daemon) Running() bool {
	if d.cmd == nil {
		return false
	}
	select {
	case <-d.done:
		return false
	default:
		return true
	}
}

// PID is the running process's id, or 0.
func (d *Daemon) PID() int {
	if !d.Running() {
		return 0
	}
	return d.cmd.Process.Pid
}

// Output is everything the processes wrote so far.
func (d *Daemon) Output() string { return d.out.String() }

// StopGrace is how long Stop waits after SIGTERM before SIGKILL.
const StopGrace = 5 * time.Second

// Stop stops the process, if it runs, by its PID with SIGTERM and, after
// StopGrace, SIGKILL, and waits for it to exit.
func (d *Daemon) Stop() {
	if !d.Running() {
		return
	}
	_ = syscall.Kill(d.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(StopGrace):
		d.Kill()
	}
}

// Kill sends SIGKILL to the process, if it runs, and waits for it.
func (d *Daemon) Kill() {
	if !d.Running() {
		return
	}
	_ = syscall.Kill(d.cmd.Process.Pid, syscall.SIGKILL)
	<-d.done
}
