//go:build unix

package testbin

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/internal/testkit"
)

// Proc is a spillway process started by Start: its combined output is
// kept, and its process group is killed (SIGKILL) when the test ends, if
// it still runs; a test that wants a graceful stop calls Stop itself.
type Proc struct {
	cmd  *exec.Cmd
	out  testkit.SyncBuffer
	done chan struct{}
	err  error // Wait's, once done is closed
}

// Start runs the spillway binary with args in a process group of its own.
func Start(t testing.TB, args ...string) *Proc {
	t.Helper()
	return StartEnv(t, nil, args...)
}

// StartEnv is Start with env added to the test's environment.
func StartEnv(t testing.TB, env []string, args ...string) *Proc {
	t.Helper()
	return start(t, env, exec.Command(Spillway(t), args...))
}

// StartLimited is Start with the process's open-file limit (soft and
// hard) set to nofile, through the shell's ulimit: the way an operator's
// unit file or container would lower it.
func StartLimited(t testing.TB, nofile int, args ...string) *Proc {
	t.Helper()
	sh := append([]string{"-c", fmt.Sprintf(`ulimit -n %d && exec "$0" "$@"`, nofile), Spillway(t)}, args...)
	return start(t, nil, exec.Command("/bin/sh", sh...))
}

func start(t testing.TB, env []string, cmd *exec.Cmd) *Proc {
	t.Helper()
	args := cmd.Args
	p := &Proc{cmd: cmd, done: make(chan struct{})}
	if env != nil {
		p.cmd.Env = append(os.Environ(), env...)
	}
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start spillway %v: %v", args, err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		if !p.Exited() {
			_ = syscall.Kill(-p.PID(), syscall.SIGKILL)
			<-p.done
		}
		if t.Failed() {
			t.Logf("spillway %v (pid %d) output:\n%s", args, p.PID(), p.Output())
		}
	})
	return p
}

// PID is the process id (and process group id).
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Output is everything the process wrote so far.
func (p *Proc) Output() string { return p.out.String() }

// Await waits up to timeout for re to match the output and returns the
// match and its submatches; it fails t if the process exits first or the
// time runs out.
func (p *Proc) Await(t testing.TB, re *regexp.Regexp, timeout time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if m := re.FindStringSubmatch(p.Output()); m != nil {
			return m
		}
		select {
		case <-p.done:
			t.Fatalf("spillway exited (%v) before printing %q:\n%s", p.err, re, p.Output())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("spillway printed no %q within %v:\n%s", re, timeout, p.Output())
		}
		time.Sleep(10 * time.Millisecond) // polling the output
	}
}

// Signal sends sig to the process.
func (p *Proc) Signal(sig syscall.Signal) error { return p.cmd.Process.Signal(sig) }

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Err is the process's exit error (nil: status 0); valid once Done is
// closed.
func (p *Proc) Err() error { return p.err }

// Stop sends SIGTERM and waits up to grace for the process to exit, then
// kills its process group. It returns Wait's error (nil: exit status 0).
func (p *Proc) Stop(grace time.Duration) error {
	select {
	case <-p.done:
		return p.err
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-p.PID(), syscall.SIGKILL)
		<-p.done
	}
	return p.err
}
