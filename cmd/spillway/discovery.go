package main

import (
	"errors"
	"log/slog"
	"strings"

	"github.com/spillway-dev/spillway/internal/discovery"
	"github.com/spillway-dev/spillway/internal/field"
	"github.com/spillway-dev/spillway/internal/lb"
	"github.com/spillway-dev/spillway/internal/registry"
)

// openDiscovery starts the source of instances that lb.discovery names,
// with what closes it once the balancer has stopped.
type openDiscovery func(*slog.Logger) (lb.Discovery, func(), error)

// discoveryFor parses lb.discovery, raw, and returns what opens the source
// it names; nil for "" (the static list, lb.instances). Each source is one
// case of its switch, on the URL's scheme.
func discoveryFor(raw string) (openDiscovery, error) {
	if raw == "" {
		return nil, nil
	}
	scheme, _, _ := strings.Cut(raw, "://")
	switch scheme {
	case registry.Scheme:
		t, err := registry.ParseURL(raw)
		if err != nil {
			return nil, field.New("lb.discovery", raw, ruleOf(err))
		}
		return func(logger *slog.Logger) (lb.Discovery, func(), error) {
			cli, err := registry.Dial(t)
			if err != nil {
				return nil, nil, err
			}
			d := registry.NewDiscovery(cli, t.Prefix, registry.Options{Logger: logger})
			return d, func() { cli.Close() }, nil
		}, nil
	case discovery.SchemeFile, discovery.SchemeSRV:
		spec, err := discovery.ParseURL(raw)
		if err != nil {
			return nil, field.New("lb.discovery", raw, ruleOf(err))
		}
		return func(logger *slog.Logger) (lb.Discovery, func(), error) {
			d, err := discovery.New(spec, logger)
			if err != nil {
				return nil, nil, err
			}
			return d, func() {}, nil
		}, nil
	default:
		return nil, field.New("lb.discovery", raw, "unknown source; want etcd://HOST:PORT[,HOST:PORT...]/PREFIX, file:///PATH or dns+srv://NAME")
	}
}

// ruleOf is the rule a discovery URL error states, without the URL that
// the field error quotes already.
func ruleOf(err error) string {
	if ue := (*registry.URLError)(nil); errors.As(err, &ue) {
		return ue.Rule
	}
	if ue := (*discovery.URLError)(nil); errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}
