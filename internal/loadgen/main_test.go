package loadgen

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
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
		if text := f.Doc.Text(); !strings.HasPrefix(text, "Package loadgen ") {
			t.Errorf("%s: package comment starts %q, want \"Package loadgen ...\"", name, text[:min(len(text), 30)])
		}
	}
	if docs != 1 {
		t.Errorf("%d files carry a package comment, want exactly 1", docs)
	}
}
