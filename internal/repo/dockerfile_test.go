package repo

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// TestDockerfile checks the image's Dockerfile without building it (no
// container runtime here or in CI): BuildKit's own parser reads it, as
// `docker build` does (a syntax error, an unknown instruction or flag
// fails here as it would there), with the lint rules that run while it
// parses (stage name casing, FROM/AS casing, MAINTAINER, comments that
// describe a stage). The rest of `docker build --check` lives in
// BuildKit's dockerfile2llb, which would compile some 300 packages
// (gRPC, containerd, OpenTelemetry) into the test; the checks below cover
// the rules of it that matter here (exec form, the .dockerignore'd
// sources), and what the image promises.
func TestDockerfile(t *testing.T) {
	root := moduleRoot(t)
	dt, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := parser.Parse(bytes.NewReader(dt))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	for _, w := range res.Warnings {
		t.Errorf("Dockerfile:%d: %s", w.Location.Start.Line, w.Short)
	}
	// BuildKit's ConsistentInstructionCasing (a dockerfile2llb rule), as
	// this file writes them: in upper case.
	for _, n := range res.AST.Children {
		if kw, _, _ := strings.Cut(n.Original, " "); kw != strings.ToUpper(kw) {
			t.Errorf("Dockerfile:%d: %s: instructions are in upper case here", n.StartLine, kw)
		}
	}
	lint := linter.New(&linter.Config{Warn: func(rule, _, url, msg string, loc []parser.Range) {
		line := 0
		if len(loc) > 0 {
			line = loc[0].Start.Line
		}
		t.Errorf("Dockerfile:%d: %s: %s (%s)", line, rule, msg, url)
	}})
	stages, _, err := instructions.Parse(res.AST, lint)
	if err != nil {
		t.Fatalf("instructions: %v", err)
	}
	if len(stages) != 2 {
		t.Fatalf("%d stages, want 2 (build, final)", len(stages))
	}
	build, final := stages[0], stages[1]

	t.Run("build", func(t *testing.T) {
		if !strings.HasPrefix(build.BaseName, "golang:") {
			t.Errorf("build stage FROM %s, want golang:…", build.BaseName)
		}
		var goBuild string
		for _, c := range build.Commands {
			if r, ok := c.(*instructions.RunCommand); ok && strings.Contains(strings.Join(r.CmdLine, " "), "go build") {
				goBuild = strings.Join(r.CmdLine, " ")
			}
		}
		for _, want := range []string{"CGO_ENABLED=0", "-trimpath", `-ldflags "-s -w`, "-X " + versionVar, "./cmd/spillway"} {
			if !strings.Contains(goBuild, want) {
				t.Errorf("go build command %q lacks %q", goBuild, want)
			}
		}
	})

	t.Run("final", func(t *testing.T) {
		if b := final.BaseName; b != "scratch" && !strings.HasPrefix(b, "gcr.io/distroless/static") {
			t.Errorf("final stage FROM %s, want distroless/static or scratch", b)
		}
		var user, entrypoint []string
		var exposed []string
		for _, c := range final.Commands {
			switch c := c.(type) {
			case *instructions.UserCommand:
				user = append(user, c.User)
			case *instructions.EntrypointCommand:
				if c.PrependShell {
					t.Errorf("ENTRYPOINT %q in shell form: the image has no shell (JSONArgsRecommended)", c.CmdLine)
				}
				entrypoint = c.CmdLine
			case *instructions.CmdCommand:
				if c.PrependShell {
					t.Errorf("CMD %q in shell form: the image has no shell", c.CmdLine)
				}
			case *instructions.HealthCheckCommand:
				if c.Health != nil && slices.Contains(c.Health.Test, "CMD-SHELL") {
					t.Errorf("HEALTHCHECK %q needs a shell", c.Health.Test)
				}
			case *instructions.ExposeCommand:
				exposed = append(exposed, c.Ports...)
			case *instructions.RunCommand:
				t.Errorf("RUN %q in the final stage: it has no shell", c.CmdLine)
			}
		}
		if len(user) != 1 || !numericNonRoot(user[0]) {
			t.Errorf("final stage USER %q, want one numeric non-root UID:GID (runAsNonRoot can verify only a number)", user)
		}
		if !slices.Equal(entrypoint, []string{"/spillway"}) {
			t.Errorf("ENTRYPOINT %q, want [\"/spillway\"]", entrypoint)
		}
		for _, p := range []string{"8080", "8081", "8001", "9001"} {
			if !slices.Contains(exposed, p) {
				t.Errorf("EXPOSE %q lacks %s (the default ports of lb and login)", exposed, p)
			}
		}
	})

	// What the build stage copies must not be excluded by .dockerignore
	// (BuildKit's CopyIgnoredFile): the module files, and every package
	// the binary is built from.
	t.Run("dockerignore", func(t *testing.T) {
		f, err := os.Open(filepath.Join(root, ".dockerignore"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		patterns, err := ignorefile.ReadAll(f)
		if err != nil {
			t.Fatal(err)
		}
		pm, err := patternmatcher.New(patterns)
		if err != nil {
			t.Fatal(err)
		}
		excluded := func(path string) bool {
			ok, err := pm.MatchesOrParentMatches(path)
			if err != nil {
				t.Fatal(err)
			}
			return ok
		}
		need := []string{"go.mod", "go.sum", "cmd/spillway/main.go", "internal/buildinfo/buildinfo.go", "internal/drill/incident.yaml", "internal/dashboard/assets"}
		for _, p := range need {
			if excluded(p) {
				t.Errorf(".dockerignore excludes %s, which the build needs", p)
			}
		}
		for _, p := range []string{".git", "dist/spillway-linux-amd64", "spillway"} {
			if !excluded(p) {
				t.Errorf(".dockerignore sends %s to the builder", p)
			}
		}
	})
}

// versionVar is the variable that -ldflags -X sets to the release
// version (internal/buildinfo).
const versionVar = "github.com/spillway-dev/spillway/internal/buildinfo.version"

// numericNonRoot reports whether a USER value is UID or UID:GID, in
// numbers, and not root.
func numericNonRoot(user string) bool {
	uid, gid, hasGID := strings.Cut(user, ":")
	u, err := strconv.Atoi(uid)
	if err != nil || u == 0 {
		return false
	}
	if hasGID {
		if g, err := strconv.Atoi(gid); err != nil || g == 0 {
			return false
		}
	}
	return true
}

// moduleRoot returns the repository's root directory.
func moduleRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatal(err)
	}
	return root
}

// TestVersionVar: the variable the Dockerfile and scripts/release set
// with -X exists, so the version they stamp is not silently dropped (the
// linker ignores -X of an unknown name).
func TestVersionVar(t *testing.T) {
	root := moduleRoot(t)
	src, err := os.ReadFile(filepath.Join(root, "internal/buildinfo/buildinfo.go"))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^var version string$`).Match(src) {
		t.Errorf("internal/buildinfo has no `var version string` for -X %s", versionVar)
	}
	for _, f := range []string{"Dockerfile", "scripts/release"} {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(b, []byte("-X "+versionVar)) {
			t.Errorf("%s does not set -X %s", f, versionVar)
		}
	}
}
