package repo

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestKitOnlyInTests checks that the test kit (internal/testkit and its
// packages, internal/testbin) is imported by tests only: by _test.go files
// and by the kit itself.
func TestKitOnlyInTests(t *testing.T) {
	const module = "github.com/spillway-dev/spillway/"
	kit := []string{"internal/testkit", "internal/testbin"}
	inKit := func(path string) bool {
		for _, k := range kit {
			if path == k || strings.HasPrefix(path, k+"/") {
				return true
			}
		}
		return false
	}
	root, files := goFiles(t)
	for _, path := range files {
		if strings.HasSuffix(path, "_test.go") || inKit(filepath.ToSlash(filepath.Dir(path))) {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), filepath.Join(root, path), nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if rel, ok := strings.CutPrefix(p, module); ok && inKit(rel) {
				t.Errorf("%s imports %s: the test kit is for tests only", path, p)
			}
		}
	}
}
