package buildinfo

import (
	"runtime/debug"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestRead(t *testing.T) {
	stamped := func() (*debug.BuildInfo, bool) {
		return &debug.BuildInfo{
			GoVersion: "go1.26.8",
			Main:      debug.Module{Path: "github.com/spillway-dev/spillway", Version: "v0.0.0-20261129054822-0d0695c770e8"},
			Settings: []debug.BuildSetting{
				{Key: "vcs.revision", Value: "0d0695c770e891878ba6eb5228864bd340b564bc"},
				{Key: "vcs.time", Value: "2026-11-29T05:48:22Z"},
				{Key: "vcs.modified", Value: "true"},
			},
		}, true
	}
	in := read(stamped)
	if in.Version != "v0.0.0-20261129054822-0d0695c770e8" || in.Revision != "0d0695c770e891878ba6eb5228864bd340b564bc" || !in.Modified || in.GoVersion != "go1.26.8" {
		t.Fatalf("read = %+v", in)
	}
	if s := in.String(); !strings.HasPrefix(s, "v0.0.0-20261129054822-0d0695c770e8 (revision 0d0695c770e8+modified, 2026-11-29T05:48:22Z, go1.26.8 ") {
		t.Errorf("String = %q", s)
	}

	unstamped := func() (*debug.BuildInfo, bool) {
		return &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}}, true
	}
	if in := read(unstamped); in.Version != "devel" || in.Revision != "" {
		t.Errorf("unstamped: %+v", in)
	}
	if in := read(func() (*debug.BuildInfo, bool) { return nil, false }); in.Version != "devel" || in.GoVersion == "" {
		t.Errorf("no build info: %+v", in)
	}

	version = "v9.9.9"
	defer func() { version = "" }()
	if in := read(stamped); in.Version != "v9.9.9" || in.Revision == "" {
		t.Errorf("link-time override: %+v", in)
	}
}

func TestCollector(t *testing.T) {
	reg := prometheus.NewRegistry()
	if err := Register(reg); err != nil {
		t.Fatal(err)
	}
	if err := Register(reg); err != nil {
		t.Fatalf("second Register on the same registry: %v", err)
	}
	in := Get()
	rev := in.ShortRevision()
	if in.Modified {
		rev += "+modified"
	}
	want := `# HELP spillway_build_info A constant 1, labelled with the running binary's version, VCS revision and Go version.
# TYPE spillway_build_info gauge
spillway_build_info{goversion="` + in.GoVersion + `",revision="` + rev + `",version="` + in.Version + `"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "spillway_build_info"); err != nil {
		t.Error(err)
	}
}
