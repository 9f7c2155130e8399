package main

import (
	"github.com/spillway-dev/spillway/internal/config"
)

// loadFile loads the spillway file at path ("" for none) onto def, applies
// the command's flags (set, which may be nil) and resolves the defaults
// that derive from other fields. The caller validates the sections it
// uses: `spillway lb` its lb: section, `spillway check` all of them.
func loadFile(path string, def config.File, set func(*config.File)) (config.File, error) {
	f, err := config.Load(path, def)
	if err != nil {
		return config.File{}, err
	}
	if set != nil {
		set(&f)
	}
	f.Resolve()
	return f, nil
}
