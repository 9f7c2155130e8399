//go:build unix

package main

import (
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/internal/testbin"
)

// TestHangupNeverKills: an operator who sends SIGHUP to "all spillway
// processes" reloads those with a file and is told off by the others;
// none of them stops serving.
func TestHangupNeverKills(t *testing.T) {
	t.Parallel()
	sim := testbin.Start(t, "backend-sim", "--listen", "127.0.0.1:0")
	simAddr := sim.Await(t, reSimListening, 10*time.Second)[1]

	cfg := filepath.Join(t.TempDir(), "login.yaml")
	write := func(body string) {
		t.Helper()
		if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("login:\n  rate_limit: {per_second: 1, burst: 1}\n")
	in := testbin.Start(t, "login", "--dev", "--config", cfg, "--listen", "127.0.0.1:0", "--health-listen", "127.0.0.1:0",
		"--backend", "http://"+simAddr)
	m := in.Await(t, reLoginListening, 10*time.Second)
	loginURL := "http://" + m[1] + "/v1/login"
	logins := func(n int) (ok int) {
		for range n {
			res, err := http.Post(loginURL, "application/json", strings.NewReader(`{"ticket":"valid-a"}`))
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode == 200 {
				ok++
			}
		}
		return ok
	}
	if ok := logins(5); ok != 1 {
		t.Fatalf("%d of 5 quick logins passed a limit of 1/s with a burst of 1", ok)
	}

	// backend-sim has nothing to reload: it says so and serves on.
	sim.Signal(syscall.SIGHUP)
	sim.Await(t, regexp.MustCompile(`SIGHUP ignored: backend-sim has no configuration file`), 5*time.Second)

	// login reloads its file: the new limit applies at once.
	write("login:\n  rate_limit: {per_second: 100, burst: 100}\n")
	in.Signal(syscall.SIGHUP)
	in.Await(t, regexp.MustCompile(`SIGHUP: configuration reloaded`), 5*time.Second)
	if ok := logins(5); ok != 5 {
		t.Errorf("after the reload, %d of 5 logins passed a limit of 100/s", ok)
	}
	// A bad file keeps the running configuration; a change that needs a
	// restart is named.
	write("login:\n  rate_limit: {per_second: .nan}\n")
	in.Signal(syscall.SIGHUP)
	in.Await(t, regexp.MustCompile(`SIGHUP: reload failed; keeping the running configuration.*finite`), 5*time.Second)
	write("login:\n  rate_limit: {per_second: 100, burst: 100}\n  admission: {limit: 3}\n")
	in.Signal(syscall.SIGHUP)
	in.Await(t, regexp.MustCompile(`need a restart; not applied" settings=admission`), 5*time.Second)
	if ok := logins(3); ok != 3 {
		t.Errorf("login stopped serving after SIGHUPs: %d of 3 logins ok", ok)
	}

	for _, p := range []*testbin.Proc{sim, in} {
		select {
		case <-p.Done():
			t.Errorf("pid %d exited after SIGHUP:\n%s", p.PID(), p.Output())
		default:
		}
	}
	if err := in.Stop(10 * time.Second); err != nil {
		t.Errorf("login did not stop cleanly after SIGHUPs: %v", err)
	}
}

// TestHangupUp: spillway up with a file reloads its lb: section on
// SIGHUP and keeps serving.
func TestHangupUp(t *testing.T) {
	t.Parallel()
	cfg := filepath.Join(t.TempDir(), "up.yaml")
	if err := os.WriteFile(cfg, []byte("fleet:\n  size: 1\nup:\n  backend_listen: 127.0.0.1:0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	up := testbin.Start(t, "up", "--config", cfg, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--admin-token", fwdToken)
	m := up.Await(t, regexp.MustCompile(`logins\s+(http://\S+)/v1/login`), 20*time.Second)
	up.Signal(syscall.SIGHUP)
	up.Await(t, regexp.MustCompile(`msg="config reloaded"`), 5*time.Second)
	res, err := http.Get(m[1] + "/")
	if err != nil {
		t.Fatalf("up stopped serving after SIGHUP: %v", err)
	}
	res.Body.Close()
	if err := up.Stop(20 * time.Second); err != nil {
		t.Errorf("up did not stop cleanly after SIGHUP: %v", err)
	}
}
