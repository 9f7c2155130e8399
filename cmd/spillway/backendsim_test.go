package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/spillway-dev/spillway/internal/backendsim"
	"github.com/spillway-dev/spillway/internal/testkit"
)

func TestBackendSimFlagErrors(t *testing.T) {
	defer goleak.VerifyNone(t)
	tests := []struct {
		name string
		args []string
		want string // in stderr
	}{
		{"bad mode", []string{"--mode", "sideways"}, `invalid value "sideways" for flag -mode`},
		{"bad latency", []string{"--latency", "soon"}, `invalid value "soon" for flag -latency: "soon": not a Go duration`},
		{"negative latency", []string{"--latency=-1s"}, `flag -latency: "-1s": must not be negative`},
		{"bad slow latency", []string{"--slow-latency", "2h"}, `flag -slow-latency: "2h0m0s": must be at most`},
		{"negative capacity", []string{"--capacity=-1"}, `invalid value "-1" for flag -capacity: -1: must not be negative`},
		{"huge capacity", []string{"--capacity", "100000"}, `flag -capacity: 100000: must be at most 65536`},
		{"fractional capacity", []string{"--capacity", "1.5"}, `flag -capacity: "1.5": not a whole number`},
		{"huge queue size", []string{"--queue-size", "99999999999999999999"}, `flag -queue-size: "99999999999999999999": not a whole number`},
		{"bad queue timeout", []string{"--queue-timeout", "soon"}, `flag -queue-timeout: "soon": not a Go duration`},
		{"negative queue timeout", []string{"--queue-timeout=-1s"}, `flag -queue-timeout: "-1s": must not be negative`},
		{"bad listen", []string{"--listen", "9000"}, `invalid value "9000" for flag -listen: address: "9000": not a host:port`},
		{"unknown flag", []string{"--speed", "1"}, `flag provided but not defined: -speed`},
		{"extra argument", []string{"now"}, `unexpected argument "now"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := runBackendSim(t.Context(), tt.args, &stdout, &stderr)
			if !errors.Is(err, errUsage) {
				t.Errorf("err = %v, want errUsage", err)
			}
			if !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("stderr = %q, want it to contain %q", stderr.String(), tt.want)
			}
			if code := run(t.Context(), append([]string{"backend-sim"}, tt.args...), &stdout, &stderr); code != 2 {
				t.Errorf("exit code %d, want 2", code)
			}
		})
	}
}

func TestBackendSimListenError(t *testing.T) {
	defer goleak.VerifyNone(t)
	ln := testkit.Listen(t)
	defer ln.Close()
	var stdout, stderr bytes.Buffer
	err := runBackendSim(t.Context(), []string{"--listen", ln.Addr().String()}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "listen") || errors.Is(err, errUsage) {
		t.Errorf("err = %v, want a listen error", err)
	}
}

// addrWatcher is a stderr that reports the address of the first
// "listening on" line.
type addrWatcher struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	addr chan string // gets one address
	sent bool
}

var listeningRE = regexp.MustCompile(`msg="listening on (\S+)"`)

func (w *addrWatcher) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if m := listeningRE.FindStringSubmatch(w.buf.String()); m != nil && !w.sent {
		w.sent = true
		w.addr <- m[1]
	}
	return len(p), nil
}

func (w *addrWatcher) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

func TestBackendSimRun(t *testing.T) {
	defer goleak.VerifyNone(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	stderr := &addrWatcher{addr: make(chan string, 1)}
	var stdout bytes.Buffer
	done := make(chan error, 1)
	go func() { // ends on cancel
		done <- runBackendSim(ctx, []string{"--listen", "127.0.0.1:0", "--mode", "hang", "--latency", "0s",
			"--capacity", "2", "--queue-size", "8", "--queue-timeout", "250ms"}, &stdout, stderr)
	}()

	var addr string
	select {
	case addr = <-stderr.addr:
	case err := <-done:
		t.Fatalf("runBackendSim returned early: %v\n%s", err, stderr)
	case <-time.After(10 * time.Second):
		t.Fatalf("no \"listening on\" line:\n%s", stderr)
	}

	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	c := &backendsim.Client{BaseURL: "http://" + addr, HTTP: &http.Client{Transport: tr}}
	cfg, err := c.Control(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Mode != backendsim.ModeHang || cfg.SlowLatency != backendsim.DefaultSlowLatency {
		t.Errorf("Control = %+v, want mode hang from the flag and the default slow latency", cfg)
	}
	if cfg.Capacity != 2 || cfg.QueueSize != 8 || cfg.QueueTimeout != 250*time.Millisecond {
		t.Errorf("Control = %+v, want capacity 2, queue size 8, queue timeout 250ms from the flags", cfg)
	}
	// A hung call gives up on its own deadline.
	vctx, vcancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer vcancel()
	if _, err := c.Validate(vctx, "valid-alice"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Validate in mode hang = %v, want deadline exceeded", err)
	}
	if err := c.SetMode(t.Context(), "up", 0); err != nil {
		t.Fatal(err)
	}
	if res, err := c.Validate(t.Context(), "valid-alice"); err != nil || !res.Valid {
		t.Errorf("Validate in mode up = %+v, %v", res, err)
	}

	cancel()
	if err := <-done; err != nil {
		t.Errorf("runBackendSim after cancel: %v", err)
	}
}
