// Package testbin builds the spillway binary for integration tests that
// run it as real processes (fleet instances, `spillway up`, drills).
//
// The binary is built once per test process, on first use, with
// CGO_ENABLED=0 and without the race detector, as it ships. A package that
// uses it runs its tests through Main (its TestMain is
// `func TestMain(m *testing.M) { testbin.Main(m) }`), which checks them for
// leaked goroutines and removes the build directory when they end; or it
// calls Cleanup itself. Start runs it as a process that the test owns: its
// output kept, stopped by PID when the test ends, and on Linux killed by
// the kernel if the test process dies first (procgroup.Child). Safe for concurrent use.
// Like internal/testkit, whose helpers it uses, only tests import it.
package testbin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"go.uber.org/goleak"
)

var (
	once sync.Once
	dir  string
	path string
	err  error
)

// Spillway returns the path of the built spillway binary, building it on
// the first call; a build failure fails t.
func Spillway(t testing.TB) string {
	t.Helper()
	once.Do(func() {
		dir, err = os.MkdirTemp("", "spillway-testbin-")
		if err != nil {
			return
		}
		path = filepath.Join(dir, "spillway")
		cmd := exec.Command("go", "build", "-o", path, "github.com/spillway-dev/spillway/cmd/spillway")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, berr := cmd.CombinedOutput(); berr != nil {
			err = fmt.Errorf("go build: %w\n%s", berr, out)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// Cleanup removes the build directory, if a binary was built.
func Cleanup() {
	if dir != "" {
		os.RemoveAll(dir)
	}
}

// Main runs a package's tests, as its TestMain: it checks that they leak
// no goroutine (goleak.VerifyTestMain) and removes the build directory
// when they end.
func Main(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.Cleanup(func(int) { Cleanup() }))
}
