package repo

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPackageDocs checks that every package in the module opens with one
// package comment, "Package x ..." (or "Command x ..." for a main
// package), as the house style asks.
func TestPackageDocs(t *testing.T) {
	dirs := map[string][]string{} // directory → its non-test Go files
	root, files := goFiles(t)
	for _, path := range files {
		if !strings.HasSuffix(path, "_test.go") {
			dirs[filepath.Dir(path)] = append(dirs[filepath.Dir(path)], path)
		}
	}
	for dir, files := range dirs {
		t.Run(dir, func(t *testing.T) {
			var docs []string
			var name string
			for _, path := range files {
				f, err := parser.ParseFile(token.NewFileSet(), filepath.Join(root, path), nil, parser.ParseComments|parser.PackageClauseOnly)
				if err != nil {
					t.Fatal(err)
				}
				name = f.Name.Name
				if f.Doc != nil {
					docs = append(docs, filepath.Base(path)+": "+f.Doc.Text())
				}
			}
			want := "Package " + name + " "
			if name == "main" {
				want = "Command " + filepath.Base(dir) + " "
			}
			if len(docs) != 1 {
				t.Fatalf("%d files carry a package comment, want exactly 1: %q", len(docs), docs)
			}
			if _, text, _ := strings.Cut(docs[0], ": "); !strings.HasPrefix(text, want) {
				t.Errorf("package comment %q does not start with %q", docs[0][:min(len(docs[0]), 60)], want)
			}
		})
	}
}

// goFiles returns the module's root and its Go files, relative to it
// (outside testdata and hidden directories).
func goFiles(t *testing.T) (root string, files []string) {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root not found at %s: %v", root, err)
	}
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") && path != root {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(path, ".go") {
			rel, err := filepath.Rel(root, path)
			if err != nil {
				return err
			}
			files = append(files, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return root, files
}
