package config

import (
	"testing"

	"github.com/spillway-dev/spillway/internal/strictyaml"
	"github.com/spillway-dev/spillway/internal/testkit"
)

// FuzzLoadFile feeds arbitrary bytes through the whole loader: strict
// decode onto the defaults, Resolve, validation. It must never panic, and
// a file it accepts must validate again after a second Resolve (Resolve is
// idempotent).
func FuzzLoadFile(f *testing.F) {
	// The command's example files, good and bad, are the seeds.
	testkit.Seed(f, "../../cmd/spillway/testdata/*.yaml")
	f.Fuzz(func(t *testing.T, data []byte) {
		fc := Default()
		if err := strictyaml.Decode(data, &fc); err != nil {
			return
		}
		fc.Resolve()
		if err := fc.Validate(); err != nil {
			return
		}
		fc.Resolve()
		if err := fc.Validate(); err != nil {
			t.Fatalf("valid config invalid after a second Resolve: %v", err)
		}
	})
}
