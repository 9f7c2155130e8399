package main

import (
	"errors"
	"fmt"

	"github.com/spillway-dev/spillway/internal/config"
	"github.com/spillway-dev/spillway/internal/fleet"
	"github.com/spillway-dev/spillway/internal/lb"
	"github.com/spillway-dev/spillway/internal/login"
	"github.com/spillway-dev/spillway/internal/stack"
)

// fileConfig is a spillway configuration file: one section per component.
// Each command reads its own section; `spillway check` validates them all.
// Absent sections take their defaults.
type fileConfig struct {
	// Login configures `spillway login`.
	Login *login.Config `yaml:"login"`
	// LB configures `spillway lb`, and the load balancer of `spillway up`.
	LB *lb.FileConfig `yaml:"lb"`
	// Fleet configures the instance group of `spillway up`.
	Fleet *fleet.Config `yaml:"fleet"`
	// Up configures what only `spillway up` needs.
	Up *stack.Settings `yaml:"up"`
}

// SetDefaults fills every section, present or not, with its defaults.
func (f *fileConfig) SetDefaults() {
	if f.Login == nil {
		f.Login = &login.Config{}
	}
	f.Login.SetDefaults()
	if f.LB == nil {
		f.LB = &lb.FileConfig{}
	}
	f.LB.SetDefaults()
	if f.Fleet == nil {
		f.Fleet = &fleet.Config{}
	}
	f.Fleet.SetDefaults()
	if f.Up == nil {
		f.Up = &stack.Settings{}
	}
	f.Up.SetDefaults()
}

// Validate validates every section and prefixes errors with the section.
func (f *fileConfig) Validate() error {
	var errs []error
	if err := f.Login.Validate(); err != nil {
		errs = append(errs, prefixErrors("login.", err))
	}
	if err := f.LB.Validate(); err != nil {
		errs = append(errs, prefixErrors("lb.", err))
	}
	if err := f.Fleet.Validate(); err != nil {
		errs = append(errs, prefixErrors("fleet.", err))
	}
	if err := f.Up.Validate(); err != nil {
		errs = append(errs, prefixErrors("up.", err))
	}
	return errors.Join(errs...)
}

// prefixErrors prefixes each error joined in err with p.
func prefixErrors(p string, err error) error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, prefixErrors(p, e))
		}
		return errors.Join(out...)
	}
	return fmt.Errorf("%s%w", p, err)
}

// decodeFile reads and strictly decodes path, without defaults or
// validation, so flags can be applied before both.
func decodeFile(path string) (*fileConfig, error) {
	f := &fileConfig{}
	if path == "" {
		return f, nil
	}
	data, err := config.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if err := config.Decode(data, f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}
