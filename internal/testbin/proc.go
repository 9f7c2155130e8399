//go:build unix

package testbin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/internal/procgroup"
	"github.com/spillway-dev/spillway/internal/testkit"
)

// Proc is a spillway process started by Start, in a process group of its
// own, which on Linux the kernel kills if the test process dies first
// (procgroup): its combined output is kept, and its process group is
// killed (SIGKILL) when the test ends, if it still runs; a test that
// wants a graceful stop calls Stop itself. Its Child gives its PID (and
// process group id), Signal, Done, Exited and Err.
type Proc struct {
	*procgroup.Child
	name string // for messages
	out  testkit.SyncBuffer
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

// StartCmd runs cmd, another program that a test runs beside spillway (a
// service written in another language), as Start runs spillway: in a
// process group of its own, its output kept, killed when the test ends.
func StartCmd(t testing.TB, cmd *exec.Cmd) *Proc {
	t.Helper()
	return start(t, nil, cmd)
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
	p := &Proc{name: filepath.Base(args[0])}
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.Stdout, cmd.Stderr = &p.out, &p.out
	// A spawner of its own, closed once the process has exited: its
	// thread's end would kill the process (Pdeathsig).
	sp := procgroup.NewSpawner()
	c, err := sp.StartChild(cmd, nil)
	if err != nil {
		sp.Close()
		t.Fatalf("start %v: %v", args, err)
	}
	p.Child = c
	t.Cleanup(func() {
		if !p.Exited() {
			_ = procgroup.Kill(cmd.Process)
			<-p.Done()
		}
		sp.Close()
		if t.Failed() {
			t.Logf("%v (pid %d) output:\n%s", args, p.PID(), p.Output())
		}
	})
	return p
}

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
		if p.Exited() {
			t.Fatalf("%s exited (%v) before printing %q:\n%s", p.name, p.Err(), re, p.Output())
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s printed no %q within %v:\n%s", p.name, re, timeout, p.Output())
		}
		time.Sleep(10 * time.Millisecond) // polling the output
	}
}

// Stop sends SIGTERM and waits up to grace for the process to exit, then
// kills its process group. It returns Wait's error (nil: exit status 0).
func (p *Proc) Stop(grace time.Duration) error {
	if p.Exited() {
		return p.Err()
	}
	_ = p.Signal(syscall.SIGTERM)
	select {
	case <-p.Done():
	case <-time.After(grace):
		_ = syscall.Kill(-p.PID(), syscall.SIGKILL)
		<-p.Done()
	}
	return p.Err()
}
