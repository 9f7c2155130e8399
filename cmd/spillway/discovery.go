package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/spillway-dev/spillway/internal/discovery"
	"github.com/spillway-dev/spillway/internal/field"
	"github.com/spillway-dev/spillway/internal/lb"
	"github.com/spillway-dev/spillway/internal/registry"
)

// openDiscovery starts the source of instances that lb.discovery names
// for the balancer self.
type openDiscovery func(logger *slog.Logger, self lbSelf) (*source, error)

// lbSelf is what a source that counts the balancers needs to know of this
// one.
type lbSelf struct {
	id     string
	weight float64
}

// source is an open discovery source.
type source struct {
	disc lb.Discovery
	// peers, for etcd, are the balancers in front of the same fleet; nil
	// otherwise.
	peers *registry.Peers
	// shared, for etcd, are the operators' decisions shared with them;
	// nil otherwise.
	shared *registry.Decisions
	// register, for etcd, registers this balancer with its admin address
	// once it listens; nil otherwise.
	register func(ctx context.Context, admin string) (*registry.Registration, error)
	// close closes the source once the balancer has stopped.
	close func()
}

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
		return func(logger *slog.Logger, self lbSelf) (*source, error) {
			cli, err := registry.Dial(t)
			if err != nil {
				return nil, err
			}
			opts := registry.Options{Logger: logger}
			peers := registry.NewPeers(cli, t.Prefix, self.id, self.weight, opts)
			shared := registry.NewDecisions(cli, t.Prefix, self.id, opts)
			// The first read of the balancers and of the operators'
			// decisions before the first request: without it this one
			// would admit the whole capacity, and ignore the fleet's
			// overrides and drains, until Run has read. etcd out of reach
			// at start fails, as the registration would.
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			if err := peers.Refresh(ctx); err != nil {
				cli.Close()
				return nil, fmt.Errorf("balancers at etcd %s: %w", strings.Join(cli.Endpoints(), ","), err)
			}
			if err := shared.Refresh(ctx); err != nil {
				cli.Close()
				return nil, fmt.Errorf("shared decisions at etcd %s: %w", strings.Join(cli.Endpoints(), ","), err)
			}
			return &source{
				disc:   registry.NewDiscovery(cli, t.Prefix, opts),
				peers:  peers,
				shared: shared,
				register: func(ctx context.Context, admin string) (*registry.Registration, error) {
					rec := registry.LBRecord{ID: self.id, Admin: admin, Weight: self.weight, Started: time.Now().UTC()}
					return registry.RegisterLB(ctx, cli, t.Prefix, rec, opts)
				},
				close: func() { cli.Close() },
			}, nil
		}, nil
	case discovery.SchemeFile, discovery.SchemeSRV, discovery.SchemeKubernetes:
		spec, err := discovery.ParseURL(raw)
		if err != nil {
			return nil, field.New("lb.discovery", raw, ruleOf(err))
		}
		return func(logger *slog.Logger, _ lbSelf) (*source, error) {
			d, err := discovery.New(spec, logger)
			if err != nil {
				return nil, err
			}
			return &source{disc: d, close: func() {}}, nil
		}, nil
	default:
		return nil, field.New("lb.discovery", raw, "unknown source; want etcd://HOST:PORT[,HOST:PORT...]/PREFIX, file:///PATH, dns+srv://NAME or kubernetes://NAMESPACE/SERVICE")
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
