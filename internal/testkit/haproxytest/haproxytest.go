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

	// Daemon's methods are Server's own: Running, PID and Output; Stop
	// (by its PID with SIGTERM, HAProxy's hard stop, and after 5 s
	// SIGKILL) and Kill; Restart, which starts HAProxy again on the same
	// configuration (after stopping it, if it runs).
	*testkit.Daemon
	bin string
}

// Binary returns the haproxy binary's path: Path, else haproxy on PATH.
// It skips t when there is none, or fails it in CI (CI=true).
func Binary(t testing.TB) string {
	t.Helper()
	return testkit.Binary(t, Path, "haproxy", "haproxy")
}

// Start writes Dir/haproxy.cfg — a global section with the two stats
// sockets, HTTP defaults with short timeouts, then what sections returns
// (called with Dir, so that it can write files there and name them) —
// checks it with haproxy -c, starts HAProxy and waits until it answers.
func Start(t testing.TB, sections func(dir string) string) *Server {
	t.Helper()
	s := &Server{bin: Binary(t), Dir: shortTempDir(t)}
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
	s.Daemon = testkit.NewDaemon(t, "haproxy", s.Config, StartTimeout, "answer on "+s.Socket,
		func() *exec.Cmd { return exec.Command(s.bin, "-f", s.Config, "-db") },
		func(cmd *exec.Cmd) bool {
			answer, err := command(s.Socket, "show info")
			return err == nil && strings.Contains(answer, "Pid: "+strconv.Itoa(cmd.Process.Pid)+"\n")
		})
	t.Cleanup(s.Stop)
	s.Restart()
	return s
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
