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
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/internal/testkit"
)

// Path is Debian's etcd, which CI installs (package etcd-server).
const Path = "/usr/bin/etcd"

// StartTimeout bounds how long Start and Restart wait for etcd to answer.
const StartTimeout = 20 * time.Second

// Server is one etcd process and its data directory.
type Server struct {
	t       testing.TB
	bin     string
	dir     string // the data directory
	client  string // http://127.0.0.1:PORT
	peer    string // http://127.0.0.1:PORT
	out     testkit.SyncBuffer
	cmd     *exec.Cmd
	done    chan struct{} // closed when cmd has been waited for
	started int           // processes started, for the log
}

// Binary returns the etcd binary's path: Path, else etcd on PATH. It
// skips t when there is none, or fails it in CI (CI=true).
func Binary(t testing.TB) string {
	t.Helper()
	if _, err := os.Stat(Path); err == nil {
		return Path
	}
	p, err := exec.LookPath("etcd")
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("no %s and no etcd on PATH in CI (apt-get install etcd-server)", Path)
	}
	t.Skipf("no %s and no etcd on PATH: apt-get install etcd-server to run this test", Path)
	return ""
}

// Start starts etcd on two free loopback ports (client and peer) with a
// fresh data directory, and waits until it answers. The process is killed
// when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{t: t, bin: Binary(t), dir: filepath.Join(t.TempDir(), "etcd")}
	s.client = "http://" + freePort(t)
	s.peer = "http://" + freePort(t)
	t.Cleanup(func() {
		s.kill()
		if t.Failed() {
			t.Logf("etcd (%s) output:\n%s", s.client, s.out.String())
		}
	})
	s.start()
	return s
}

// Endpoint is the client URL, http://127.0.0.1:PORT.
func (s *Server) Endpoint() string { return s.client }

// HostPort is the client URL's host:port.
func (s *Server) HostPort() string { return strings.TrimPrefix(s.client, "http://") }

// Running reports whether the etcd process runs.
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

// Stop stops etcd, with SIGTERM and, after 5 s, SIGKILL, and waits for
// the process to exit. Its data directory and ports are kept for Restart.
func (s *Server) Stop() {
	s.t.Helper()
	if !s.Running() {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		s.kill()
	}
}

// Restart starts etcd again on the same data directory and ports (after
// stopping it, if it runs) and waits until it answers.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.start()
}

// kill sends SIGKILL to the process, if it runs, and waits for it.
func (s *Server) kill() {
	if !s.Running() {
		return
	}
	_ = syscall.Kill(s.cmd.Process.Pid, syscall.SIGKILL)
	<-s.done
}

func (s *Server) start() {
	s.t.Helper()
	s.started++
	fmt.Fprintf(&s.out, "--- etcd start #%d\n", s.started)
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
	cmd.Stdout, cmd.Stderr = &s.out, &s.out
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start etcd: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }() // ends with the process, which kill ends
	s.cmd, s.done = cmd, done

	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: time.Second}
	deadline := time.Now().Add(StartTimeout)
	for {
		if !s.Running() {
			s.t.Fatalf("etcd exited at start:\n%s", s.out.String())
		}
		if res, err := hc.Get(s.client + "/health"); err == nil {
			var b [256]byte
			n, _ := res.Body.Read(b[:])
			res.Body.Close()
			if res.StatusCode == http.StatusOK && strings.Contains(string(b[:n]), `"true"`) {
				return
			}
		}
		if time.Now().After(deadline) {
			s.kill()
			s.t.Fatalf("etcd did not answer on %s within %v:\n%s", s.client, StartTimeout, s.out.String())
		}
		time.Sleep(20 * time.Millisecond) // polling a real process
	}
}

// freePort returns a loopback host:port that was free a moment ago.
func freePort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
