package stack

import (
	"fmt"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"
)

// The spillway binary the tests run (the fleet's login instances, and
// `spillway up` itself), built once, on first use.
var (
	binOnce  sync.Once
	binDir   string
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

// spillwayBinary builds ./cmd/spillway with CGO_ENABLED=0 (as it ships)
// into a temporary directory and returns its path.
func spillwayBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "stack-test-")
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

// TestPackageDoc keeps the package comment in place and in shape.
func TestPackageDoc(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	var docs int
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), name, nil, parser.ParseComments|parser.PackageClauseOnly)
		if err != nil {
			t.Fatal(err)
		}
		if f.Doc == nil {
			continue
		}
		docs++
		if text := f.Doc.Text(); !strings.HasPrefix(text, "Package stack ") {
			t.Errorf("%s: package comment starts %q, want \"Package stack ...\"", name, text[:min(len(text), 30)])
		}
	}
	if docs != 1 {
		t.Errorf("%d files carry a package comment, want exactly 1", docs)
	}
}
