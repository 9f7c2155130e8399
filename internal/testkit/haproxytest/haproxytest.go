//go:build unix

// Package haproxytest runs a real HAProxy for a test: Debian's haproxy
// (/usr/sbin/haproxy, or haproxy on PATH) in the foreground (-db), on a
// configuration the test writes, with an admin-level and a user-level
// stats socket. It is part of the test kit (see internal/testkit), apart
// so that only the tests that need HAProxy use it.
//
// # Contract
//
//   - Only tests import it. Start needs the haproxy binary; without it
//     the test is skipped, except in CI (CI=true), which installs it:
//     there the test fails.
//   - A Server belongs to the test that started it: its methods fail that
//     test (call them from the test's goroutine), and the haproxy process
//     is stopped by its PID and waited for when the test ends, at the
//     latest.
//   - Start and Restart return once the process answers "show info" on
//     the admin socket with its own Pid. Restart keeps the configuration,
//     the directory and the ports; what the Runtime API changed is gone,
//     as with any HAProxy restart.
//   - HAProxy's own output (its log goes to stderr) is kept, and logged
//     when the test fails.
//   - It does not import internal/haproxy, whose tests use it.
package haproxytest

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/internal/testkit"
)

// Path is Debian's haproxy, which CI installs (package haproxy).
const Path = "/usr/sbin/haproxy"

// StartTimeout bounds how long Start and Restart wait for HAProxy to
// answer on its socket.
const StartTimeout = 10 * time.Second

// Server is one HAProxy process and its directory.
type Server struct {
	// Dir holds haproxy.cfg and the sockets; the test may keep its own
	// files there (maps).
	Dir string
	// Config is the configuration file's path.
	Config string
	// Socket is the admin-level stats socket's path.
	Socket string
	// UserSocket is a user-level stats socket's path: commands that
	// change state answer "Permission denied" on it.
	UserSocket string

	t       testing.TB
	bin     string
	out     testkit.SyncBuffer
	cmd     *exec.Cmd
	done    chan struct{} // closed when cmd has been waited for
	started int
}

// Binary returns the haproxy binary's path: Path, else haproxy on PATH.
// It skips t when there is none, or fails it in CI (CI=true).
func Binary(t testing.TB) string {
	t.Helper()
	if _, err := os.Stat(Path); err == nil {
		return Path
	}
	if p, err := exec.LookPath("haproxy"); err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("no %s and no haproxy on PATH in CI (apt-get install haproxy)", Path)
	}
	t.Skipf("no %s and no haproxy on PATH: apt-get install haproxy to run this test", Path)
	return ""
}

// Start writes Dir/haproxy.cfg — a global section with the two stats
// sockets, HTTP defaults with short timeouts, then what sections returns
// (called with Dir, so that it can write files there and name them) —
// checks it with haproxy -c, starts HAProxy and waits until it answers.
func Start(t testing.TB, sections func(dir string) string) *Server {
	t.Helper()
	s := &Server{t: t, bin: Binary(t), Dir: shortTempDir(t)}
	s.Config = filepath.Join(s.Dir, "haproxy.cfg")
	s.Socket = filepath.Join(s.Dir, "admin.sock")
	s.UserSocket = filepath.Join(s.Dir, "user.sock")
	cfg := fmt.Sprintf(`# Written by haproxytest.
global
    stats socket %s mode 600 level admin
    stats socket %s mode 600 level user
    log stderr format iso local0 notice
    nbthread 1
    maxconn 256

defaults
    mode http
    log global
    timeout connect 1s
    timeout client 5s
    timeout server 5s

%s`, s.Socket, s.UserSocket, sections(s.Dir))
	if err := os.WriteFile(s.Config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(s.bin, "-c", "-f", s.Config).CombinedOutput(); err != nil {
		t.Fatalf("haproxy -c -f %s: %v\n%s\nconfiguration:\n%s", s.Config, err, out, cfg)
	}
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("haproxy (%s) output:\n%s", s.Config, s.out.String())
		}
	})
	s.start()
	return s
}

// PID is the running process's id, or 0.
func (s *Server) PID() int {
	if !s.Running() {
		return 0
	}
	return s.cmd.Process.Pid
}

// Running reports whether the haproxy process runs.
func (s *Server) Running() bool {
	if s.cmd == nil {
		return false
	}
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// Stop stops HAProxy by its PID with SIGTERM (HAProxy's hard stop) and,
// after 5 s, SIGKILL, and waits for the process to exit.
func (s *Server) Stop() {
	if !s.Running() {
		return
	}
	_ = syscall.Kill(s.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
	}
}

// Restart stops HAProxy, if it runs, and starts it again on the same
// configuration.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.start()
}

func (s *Server) start() {
	s.t.Helper()
	s.started++
	fmt.Fprintf(&s.out, "--- haproxy start #%d\n", s.started)
	cmd := exec.Command(s.bin, "-f", s.Config, "-db")
	cmd.Stdout, cmd.Stderr = &s.out, &s.out
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start haproxy: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }() // ends with the process, which Stop ends
	s.cmd, s.done = cmd, done

	want := "Pid: " + strconv.Itoa(cmd.Process.Pid) + "\n"
	deadline := time.Now().Add(StartTimeout)
	for {
		if !s.Running() {
			s.t.Fatalf("haproxy exited at start:\n%s", s.out.String())
		}
		if answer, err := command(s.Socket, "show info"); err == nil && strings.Contains(answer, want) {
			return
		}
		if time.Now().After(deadline) {
			s.Stop()
			s.t.Fatalf("haproxy did not answer on %s within %v:\n%s", s.Socket, StartTimeout, s.out.String())
		}
		time.Sleep(10 * time.Millisecond) // polling a real process
	}
}

// command sends one command to a stats socket and reads the answer.
func command(socket, cmd string) (string, error) {
	c, err := net.DialTimeout("unix", socket, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(time.Second)); err != nil {
		return "", err
	}
	if _, err := io.WriteString(c, cmd+"\n"); err != nil {
		return "", err
	}
	b, err := io.ReadAll(c)
	return string(b), err
}

// shortTempDir is t.TempDir(), or a shorter directory removed when the
// test ends if a socket path in it would pass the 108 bytes of
// sockaddr_un (long test names make long temporary directories).
func shortTempDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	if len(dir)+len("/admin.sock") < 100 {
		return dir
	}
	dir, err := os.MkdirTemp("", "haproxytest")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// FreePort returns a loopback host:port that was free a moment ago, for
// a frontend to bind.
func FreePort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
