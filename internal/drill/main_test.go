package drill

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"go.uber.org/goleak"
)

// The spillway binary the integration test runs, built once, on first use,
// so that the pure tests run without a build.
var (
	binDir   string
	binOnce  sync.Once
	binPath  string
	binError error
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.Cleanup(func(int) {
		if binDir != "" {
			os.RemoveAll(binDir)
		}
	}))
}

// spillwayBinary builds ./cmd/spillway with CGO_ENABLED=0 (as it ships, and
// without the race detector: the drill's processes must not be slowed
// down) into a temporary directory and returns its path.
func spillwayBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "drill-test-")
		if err != nil {
			binError = err
			return
		}
		binDir = dir
		binPath = filepath.Join(dir, "spillway")
		cmd := exec.Command("go", "build", "-o", binPath, "github.com/spillway-dev/spillway/cmd/spillway")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			binError = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	if binError != nil {
		t.Fatal(binError)
	}
	return binPath
}
