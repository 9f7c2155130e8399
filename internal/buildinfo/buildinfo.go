// Package buildinfo says which build of spillway is running: the module
// version and VCS revision the Go toolchain embeds in the binary, read
// once with runtime/debug.ReadBuildInfo, and a spillway_build_info gauge
// for every metrics endpoint.
//
// Everything here is read-only after package initialisation and safe for
// concurrent use.
package buildinfo

import (
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// version overrides the embedded module version when set at link time:
//
//	go build -ldflags "-X github.com/spillway-dev/spillway/internal/buildinfo.version=v1.2.3" ./cmd/spillway
var version string

// Info describes one build.
type Info struct {
	// Version is the module version: a release tag (v1.2.3), a Go
	// pseudo-version stamped from the VCS (v0.0.0-20261129054822-0d0695c770e8),
	// the link-time override, or "devel" when the build carries none
	// (go run, or -buildvcs=false).
	Version string
	// Revision is the VCS revision the binary was built from, "" if
	// unknown; Modified says the work tree had uncommitted changes.
	Revision string
	Modified bool
	// Time is the revision's commit time (RFC 3339), "" if unknown.
	Time string
	// GoVersion is the toolchain that built the binary.
	GoVersion string
	// Platform is GOOS/GOARCH.
	Platform string
}

var current = read(debug.ReadBuildInfo)

// Get returns the running binary's build information.
func Get() Info { return current }

func read(readBuildInfo func() (*debug.BuildInfo, bool)) Info {
	in := Info{Version: "devel", GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	bi, ok := readBuildInfo()
	if ok {
		if v := bi.Main.Version; v != "" && v != "(devel)" {
			in.Version = v
		}
		if bi.GoVersion != "" {
			in.GoVersion = bi.GoVersion
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				in.Revision = s.Value
			case "vcs.time":
				in.Time = s.Value
			case "vcs.modified":
				in.Modified = s.Value == "true"
			}
		}
	}
	if version != "" {
		in.Version = version
	}
	return in
}

// String is the one-line form `spillway version` prints, e.g.
// "v0.0.0-20261129054822-0d0695c770e8 (revision 0d0695c770e8, 2026-11-29T05:48:22Z, go1.26.8 linux/amd64)".
func (in Info) String() string {
	var b strings.Builder
	b.WriteString(in.Version)
	b.WriteString(" (")
	if in.Revision != "" {
		fmt.Fprintf(&b, "revision %s", in.ShortRevision())
		if in.Modified {
			b.WriteString("+modified")
		}
		if in.Time != "" {
			b.WriteString(", " + in.Time)
		}
		b.WriteString(", ")
	}
	b.WriteString(in.GoVersion + " " + in.Platform + ")")
	return b.String()
}

// ShortRevision is the first 12 characters of Revision.
func (in Info) ShortRevision() string {
	if len(in.Revision) > 12 {
		return in.Revision[:12]
	}
	return in.Revision
}

// NewCollector returns a collector of the constant gauge
// spillway_build_info{version, revision, goversion} = 1, the Prometheus
// convention for exposing a build (prometheus_build_info, node_exporter's
// too): join it to any series to see which build produced it.
func NewCollector() prometheus.Collector {
	in := Get()
	rev := in.ShortRevision()
	if in.Modified {
		rev += "+modified"
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "spillway_build_info",
		Help: "A constant 1, labelled with the running binary's version, VCS revision and Go version.",
		ConstLabels: prometheus.Labels{
			"version":   in.Version,
			"revision":  rev,
			"goversion": in.GoVersion,
		},
	})
	g.Set(1)
	return g
}

// Register registers NewCollector's gauge with reg; a registry that
// already has it is left as it is, so components that share a registry
// may each call it.
func Register(reg prometheus.Registerer) error {
	err := reg.Register(NewCollector())
	var are prometheus.AlreadyRegisteredError
	if err != nil && !errors.As(err, &are) {
		return fmt.Errorf("register spillway_build_info: %w", err)
	}
	return nil
}
