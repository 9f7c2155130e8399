package testkit

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Listen returns a TCP listener on a loopback port the kernel chose. The
// caller, or the server it hands the listener to, closes it.
func Listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// FreePort returns a loopback host:port that was free a moment ago, for a
// server that takes an address rather than a listener.
func FreePort(t testing.TB) string {
	t.Helper()
	ln := Listen(t)
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// Go runs run in a goroutine of its own and returns stop, which cancels
// run's context, waits up to within for run to return, and returns what
// it returned; later calls return the same. If run has not returned by
// then, stop fails t, naming what, and returns nil without waiting
// longer. If the test does not call stop, it runs when the test ends, and
// an error from run fails t.
func Go(t testing.TB, what string, within time.Duration, run func(context.Context) error) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	once := sync.OnceValue(func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(within):
			t.Errorf("%s did not return within %v of its context's cancel", what, within)
			return nil
		}
	})
	var called atomic.Bool
	t.Cleanup(func() {
		if !called.Load() {
			if err := once(); err != nil {
				t.Errorf("%s: %v", what, err)
			}
		}
	})
	return func() error {
		called.Store(true)
		return once()
	}
}

// ServeWait bounds how long Serve waits, when the test ends, for serve to
// return.
const ServeWait = 30 * time.Second

// Serve runs serve on a fresh loopback listener (Listen) until the test
// ends, and returns the listener's address. When the test ends it cancels
// serve's context and waits for serve to return; an error from serve, or
// no return within ServeWait, fails t.
func Serve(t testing.TB, serve func(context.Context, net.Listener) error) (addr string) {
	t.Helper()
	ln := Listen(t)
	addr = ln.Addr().String()
	Go(t, "serve on "+addr, ServeWait, func(ctx context.Context) error { return serve(ctx, ln) })
	return addr
}
