// Package testkit holds the test helpers that many of spillway's packages
// need, so that none keeps a copy (as Tailscale's tstest and Prometheus'
// util/testutil): a synchronized buffer (SyncBuffer), a polling wait
// (WaitFor), a manual clock (Clock), process checks (Alive,
// StillRunning), servers and loops run for the length of a test (Listen,
// Serve, Go, FreePort), system daemons a test runs (Binary, Daemon: the
// process handling behind etcdtest and haproxytest) and fuzz seeds from
// testdata (Seed), a made-up certificate authority for TLS tests (CA).
// The headless-Chromium
// harness is testkit/chromium, apart so that only the tests that drive a
// browser link chromedp; a real etcd for a test is testkit/etcdtest; a
// TCP proxy whose link a test can cut (a partition) is testkit/tcpproxy;
// building and running the spillway binary is internal/testbin.
//
// # Contract
//
//   - Only tests import it, and internal/testbin (internal/repo checks
//     this). Helpers take the test's testing.TB and fail it from the
//     test's goroutine.
//   - The zero SyncBuffer is empty and ready; a Clock comes from NewClock.
//     Both are safe for concurrent use.
//   - WaitFor polls every PollInterval in real time: it is for real
//     servers and processes. Code that takes a clock is tested in
//     testing/synctest, or with a Clock where it takes a now func.
//   - What Go and Serve start is stopped when the test ends at the latest,
//     and waited for within a bound; one that does not return within it
//     fails the test.
//   - Alive and StillRunning are for Unix systems; they read /proc where
//     there is one. So are Binary and Daemon; a Daemon's
//     process is killed by the kernel if the test process dies first, on
//     Linux.
package testkit

import (
	"bytes"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// SyncBuffer is a bytes.Buffer safe for concurrent use: a logger's or a
// child process's writes on one side, the test's reads on the other. The
// zero value is an empty buffer.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p to the buffer.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// PollInterval is how often WaitFor checks its condition.
const PollInterval = 10 * time.Millisecond

// WaitFor calls cond every PollInterval until it returns true, and returns
// how long that took. If cond does not hold within timeout, WaitFor fails
// t, naming what it waited for. Polling takes real time; it is for real
// servers and processes, whose progress nothing else signals.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(PollInterval) // polling, see above
	}
	return time.Since(start)
}

// Seed adds every file matching pattern (filepath.Glob's) to f's seed
// corpus: a fuzz target starts from the testdata that the table tests
// read.
func Seed(f *testing.F, pattern string) {
	f.Helper()
	files, err := filepath.Glob(pattern)
	if err != nil {
		f.Fatal(err)
	}
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

// Clock is a manual clock for code that takes a now func() time.Time (pass
// its Now): it stands still until Advance moves it. Safe for concurrent
// use. A test that can run in a testing/synctest bubble needs no Clock.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a Clock that reads start.
func NewClock(start time.Time) *Clock { return &Clock{t: start} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}
