package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spillway-dev/spillway/internal/lb"
)

// SRVConfig configures an SRV.
type SRVConfig struct {
	// Name is the SRV name to resolve: "_login._tcp.example.com" (RFC
	// 2782), "_login._tcp.login.default.svc.cluster.local" (a Kubernetes
	// headless service's named port), "login.service.consul" (Consul).
	Name string
	// Interval is how often the name is resolved. Default
	// DefaultSRVInterval.
	Interval time.Duration
	// HealthPort, when not 0, is the port every instance's health is
	// checked on, at the service's address: the pods of a Deployment
	// share their container ports. At most one of HealthPort and
	// HealthName.
	HealthPort int
	// HealthName, when set, is a second SRV name whose records give the
	// health ports (a headless service's second named port,
	// "_health._tcp.login.default.svc.cluster.local"): a service record
	// is paired with the health record of the same target, and skipped
	// (logged) when that target has no health record, or several service
	// or health records, so that the pairing is ambiguous.
	//
	// With neither, the health address is the service address, as with
	// `health` equal to `service` in the configuration (the 2018
	// configuration: checks share the service port).
	HealthName string
	// Resolver resolves the names. Nil: net.DefaultResolver. Tests give
	// one whose Dial reaches their own DNS server.
	Resolver *net.Resolver
	// Log receives the source's events. Nil: discarded.
	Log *slog.Logger
	// After waits between resolutions. Nil: time.After. Tests give one
	// whose channel they control.
	After func(time.Duration) <-chan time.Time
}

// SRV is a Discovery that resolves a DNS SRV name every Interval. Each
// record's target is resolved to its addresses (its IPv4 addresses if it
// has any, else its IPv6 ones, so that a dual-stack pod is one instance),
// and each address with the record's port is an instance; priorities and
// weights are ignored (every record is an instance, as Prometheus'
// dns_sd). The set is sorted by service address and has no duplicates.
//
// A failed lookup of the name, or of the health name, a target that
// fails other than "not found", and an answer that leaves no instance
// keep the last set: instances that are really gone then fail their
// health checks, which is safe, where an empty set turns every client
// away. A target that is not found is skipped. Until the first lookup
// that succeeds, Watch passes no set.
type SRV struct {
	c SRVConfig
}

var _ lb.Discovery = (*SRV)(nil)

// NewSRV validates c and returns its source; it resolves nothing yet.
func NewSRV(c SRVConfig) (*SRV, error) {
	if c.Interval == 0 {
		c.Interval = DefaultSRVInterval
	}
	var errs []error
	errs = append(errs, checkName("name", c.Name))
	if c.Interval < 0 {
		errs = append(errs, fmt.Errorf("interval: %v: must be positive", c.Interval))
	}
	if c.HealthPort != 0 {
		if c.HealthPort < 1 || c.HealthPort > 65535 {
			errs = append(errs, fmt.Errorf("health_port: %d: must be a port from 1 to 65535", c.HealthPort))
		}
		if c.HealthName != "" {
			errs = append(errs, errors.New("health_port and health_srv: give one, not both"))
		}
	}
	if c.HealthName != "" {
		errs = append(errs, checkName("health_srv", c.HealthName))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("discovery dns+srv %q: %w", c.Name, err)
	}
	if c.Resolver == nil {
		c.Resolver = net.DefaultResolver
	}
	if c.After == nil {
		c.After = time.After
	}
	c.Log = orDiscard(c.Log).With("discovery", "dns+srv", "name", c.Name)
	return &SRV{c: c}, nil
}

// Watch implements lb.Discovery: it resolves at once, then every
// Interval, and passes each set that differs from the last, until ctx is
// done. A resolution is bounded by the interval.
func (s *SRV) Watch(ctx context.Context, update func([]lb.Instance)) error {
	p := &publisher{update: update, log: s.c.Log}
	for {
		rctx, cancel := context.WithTimeout(ctx, s.c.Interval)
		insts, skipped, err := s.resolve(rctx)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		p.skipped("SRV records", skipped)
		if err != nil {
			p.fail(err)
		} else {
			p.set(insts)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.c.After(s.c.Interval):
		}
	}
}

// Instances resolves the name once and returns its set, or why it would
// be refused.
func (s *SRV) Instances(ctx context.Context) ([]lb.Instance, error) {
	insts, _, err := s.resolve(ctx)
	return insts, err
}

// resolve resolves the name once: the set, sorted and without duplicates,
// and a note for each record skipped.
func (s *SRV) resolve(ctx context.Context) (insts []lb.Instance, skipped []string, err error) {
	r := s.c.Resolver
	_, recs, err := r.LookupSRV(ctx, "", "", s.c.Name)
	if err != nil {
		return nil, nil, fmt.Errorf("lookup SRV %s: %w", s.c.Name, err)
	}
	var healthPorts map[string][]uint16 // target → its health ports
	servicePorts := map[string]int{}    // target → its service records
	if s.c.HealthName != "" {
		_, hrecs, err := r.LookupSRV(ctx, "", "", s.c.HealthName)
		if err != nil {
			return nil, nil, fmt.Errorf("lookup SRV %s (health_srv): %w", s.c.HealthName, err)
		}
		healthPorts = make(map[string][]uint16, len(hrecs))
		for _, h := range hrecs {
			t := canonTarget(h.Target)
			if !slices.Contains(healthPorts[t], h.Port) {
				healthPorts[t] = append(healthPorts[t], h.Port)
			}
		}
		for _, rec := range recs {
			servicePorts[canonTarget(rec.Target)]++
		}
	}

	addrs := map[string][]netip.Addr{} // target → addresses, one lookup each
	seen := map[string]bool{}
	for _, rec := range recs {
		t := canonTarget(rec.Target)
		if rec.Port == 0 || t == "" {
			skipped = append(skipped, fmt.Sprintf("%s:%d: no target or port", t, rec.Port))
			continue
		}
		healthPort := int(rec.Port)
		switch {
		case s.c.HealthPort != 0:
			healthPort = s.c.HealthPort
		case healthPorts != nil:
			hp := healthPorts[t]
			if len(hp) == 0 {
				skipped = append(skipped, fmt.Sprintf("%s:%d: no %s record for %s", t, rec.Port, s.c.HealthName, t))
				continue
			}
			if len(hp) > 1 || servicePorts[t] > 1 {
				skipped = append(skipped, fmt.Sprintf("%s:%d: %s has several service or health records; cannot pair them", t, rec.Port, t))
				continue
			}
			healthPort = int(hp[0])
		}
		ips, ok := addrs[t]
		if !ok {
			ips, err = lookupTarget(ctx, r, t)
			if err != nil {
				var dnsErr *net.DNSError
				if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
					skipped = append(skipped, fmt.Sprintf("%s: not found", t))
					addrs[t] = nil
					continue
				}
				return nil, skipped, fmt.Errorf("lookup %s (target of %s): %w", t, s.c.Name, err)
			}
			addrs[t] = ips
		}
		for _, ip := range ips {
			svc := net.JoinHostPort(ip.String(), strconv.Itoa(int(rec.Port)))
			if seen[svc] {
				continue
			}
			seen[svc] = true
			insts = append(insts, lb.Instance{
				Service: svc,
				Health:  net.JoinHostPort(ip.String(), strconv.Itoa(healthPort)),
			})
		}
	}
	if len(insts) == 0 {
		return nil, skipped, fmt.Errorf("lookup SRV %s: %d records, no instance", s.c.Name, len(recs))
	}
	if len(insts) > lb.MaxInstances {
		return nil, skipped, fmt.Errorf("lookup SRV %s: %d instances, more than %d", s.c.Name, len(insts), lb.MaxInstances)
	}
	slices.SortFunc(insts, func(a, b lb.Instance) int { return cmpAddr(a.Service, b.Service) })
	return insts, skipped, nil
}

// lookupTarget returns a target's IPv4 addresses, or its IPv6 ones if it
// has none, sorted.
func lookupTarget(ctx context.Context, r *net.Resolver, target string) ([]netip.Addr, error) {
	all, err := r.LookupNetIP(ctx, "ip", target)
	if err != nil {
		return nil, err
	}
	var v4, v6 []netip.Addr
	for _, a := range all {
		a = a.Unmap()
		if a.Is4() {
			v4 = append(v4, a)
		} else {
			v6 = append(v6, a.WithZone(""))
		}
	}
	out := v4
	if len(out) == 0 {
		out = v6
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out), nil
}

// canonTarget is a target's name as records are compared: lower case,
// without the final dot.
func canonTarget(t string) string { return strings.ToLower(strings.TrimSuffix(t, ".")) }

// cmpAddr orders ip:port strings by address, then port.
func cmpAddr(a, b string) int {
	ap, errA := netip.ParseAddrPort(a)
	bp, errB := netip.ParseAddrPort(b)
	if errA != nil || errB != nil {
		return strings.Compare(a, b)
	}
	return ap.Compare(bp)
}
