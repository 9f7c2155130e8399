//go:build unix

// Package etcdtest runs a real single-member etcd for a test: Debian's
// etcd-server (/usr/bin/etcd, or etcd on PATH), on free loopback ports,
// with its data in the test's temporary directory. It is part of the test
// kit (see internal/testkit), apart so that only the tests that need etcd
// use it.
//
// # Contract
//
//   - Only tests import it. Start needs the etcd binary; without it the
//     test is skipped, except in CI (CI=true), which installs it: there
//     the test fails.
//   - A Server belongs to the test that started it: its methods fail that
//     test (call them from the test's goroutine), and the etcd process is
//     killed by its PID and waited for when the test ends, at the latest.
//   - Stop and Restart keep the data directory and the ports: a test can
//     take etcd away and bring it back with what it held.
//   - etcd's own output is kept, and logged when the test fails.
package etcdtest

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/internal/testkit"
)

// Path is Debian's etcd, which CI installs (package etcd-server).
const Path = "/usr/bin/etcd"

// StartTimeout bounds how long Start and Restart wait for etcd to answer.
const StartTimeout = 20 * time.Second

// Server is one etcd process and its data directory. Its Daemon's
// methods are its own: Running, PID and Output; Stop and Kill; Restart,
// which starts etcd again on the same data directory and ports (after
// stopping it, if it runs) and waits until it answers.
type Server struct {
	*testkit.Daemon
	bin    string
	dir    string // the data directory
	client string // http://127.0.0.1:PORT
	peer   string // http://127.0.0.1:PORT
}

// Binary returns the etcd binary's path: Path, else etcd on PATH. It
// skips t when there is none, or fails it in CI (CI=true).
func Binary(t testing.TB) string {
	t.Helper()
	return testkit.Binary(t, Path, "etcd", "etcd-server")
}

// Start starts etcd on two free loopback ports (client and peer) with a
// fresh data directory, and waits until it answers. The process is killed
// when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{bin: Binary(t), dir: filepath.Join(t.TempDir(), "etcd")}
	s.client = "http://" + testkit.FreePort(t)
	s.peer = "http://" + testkit.FreePort(t)
	s.Daemon = testkit.NewDaemon(t, "etcd", s.client, StartTimeout, "answer on "+s.client, s.command, s.healthy)
	t.Cleanup(s.Kill)
	s.Restart()
	return s
}

// Endpoint is the client URL, http://127.0.0.1:PORT.
func (s *Server) Endpoint() string { return s.client }

// HostPort is the client URL's host:port.
func (s *Server) HostPort() string { return strings.TrimPrefix(s.client, "http://") }

// command is etcd's command line: one member, the data directory and the
// ports of s.
func (s *Server) command() *exec.Cmd {
	cmd := exec.Command(s.bin,
		"--name", "test",
		"--data-dir", s.dir,
		"--listen-client-urls", s.client,
		"--advertise-client-urls", s.client,
		"--listen-peer-urls", s.peer,
		"--initial-advertise-peer-urls", s.peer,
		"--initial-cluster", "test="+s.peer,
		"--initial-cluster-state", "new",
		"--logger", "zap",
		"--log-outputs", "stderr",
		"--log-level", "warn",
	)
	cmd.Env = os.Environ()
	if runtime.GOARCH != "amd64" {
		// etcd 3.4 refuses to start on other architectures without it.
		cmd.Env = append(cmd.Env, "ETCD_UNSUPPORTED_ARCH="+runtime.GOARCH)
	}
	return cmd
}

// healthy reports whether etcd's /health says it is.
func (s *Server) healthy(*exec.Cmd) bool {
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: time.Second}
	res, err := hc.Get(s.client + "/health")
	if err != nil {
		return false
	}
	var b [256]byte
	n, _ := res.Body.Read(b[:])
	res.Body.Close()
	return res.StatusCode == http.StatusOK && strings.Contains(string(b[:n]), `"true"`)
}
