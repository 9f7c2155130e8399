// Package registry keeps a fleet's instances in etcd: an instance
// registers itself under a lease (Register), and a load balancer
// discovers the registered set and follows its changes (Discovery, an
// lb.Discovery). Balancers in front of the same fleet register too
// (RegisterLB, PREFIX/lbs/ID) and each takes its share of the fleet's
// capacity by weight (Peers, an lb.Peers); they share the operators'
// decisions, shedding overrides (PREFIX/overrides/DEPENDENCY) and drains
// (PREFIX/drains/INSTANCE), so that a change on any balancer's admin API
// applies on all (Decisions, an lb.Shared).
//
// # Contract
//
//   - The place is an etcd URL, etcd://HOST:PORT[,HOST:PORT...]/PREFIX
//     (ParseURL). An instance is one key, PREFIX/instances/ID, whose value
//     is a Record in JSON, attached to a lease of the registration's TTL
//     (default 5 s) that the instance keeps alive. A key exists while its
//     instance does: an instance that dies (kill -9) leaves the set within
//     its TTL; one that drains revokes its lease first (Deregister).
//   - Register fails at once, with the endpoints named, when etcd cannot
//     grant the lease. Once registered, losing etcd never stops the
//     instance: Registration.Run retries, registering again when etcd
//     comes back, and logs a warning once per outage.
//   - Losing etcd never empties a balancer: Discovery keeps the last set
//     it read, retries with backoff and, once etcd answers again, reads
//     the whole prefix afresh. Connected and LastSync tell whether etcd
//     answers and when the set was last known to be current.
//   - Losing etcd never changes a balancer's share: Peers keeps the last
//     one (taking the whole capacity would multiply the admitted load)
//     and reads PREFIX/lbs/ afresh once etcd answers.
//   - Losing etcd never changes a decision in force: Decisions keeps
//     them, and the changes taken on this balancer meanwhile, which apply
//     here at once and are published once etcd answers, unless another
//     balancer changed the same decision first (it then stands). Every
//     balancer applies what etcd holds: the write of the highest
//     revision.
//   - Registration, Discovery, Peers and Decisions are safe for
//     concurrent use. Each Run or Watch runs until its context is done;
//     the etcd client is the caller's, who closes it after they have
//     returned.
//   - Backoff and time are injected (Options); the I/O is the etcd
//     client's.
package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"strconv"
	"strings"
	"time"
	"unicode"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Scheme is the URL scheme of an etcd registry.
const Scheme = "etcd"

// DefaultTTL is a registration's lease TTL when Options.TTL is zero.
const DefaultTTL = 5 * time.Second

// maxPrefix bounds the length of a key prefix.
const maxPrefix = 256

// Target is a parsed etcd URL: where etcd is and under which prefix.
type Target struct {
	// Endpoints are the client URLs, "http://HOST:PORT", in the URL's
	// order.
	Endpoints []string
	// Prefix is the key prefix: it starts with "/" and does not end with
	// one ("/spillway").
	Prefix string
}

// ErrURL is what every error of ParseURL is (errors.Is).
var ErrURL = errors.New("invalid etcd URL")

// URLError is the error of ParseURL: the rule the URL breaks.
type URLError struct {
	Rule string
}

func (e *URLError) Error() string { return ErrURL.Error() + ": " + e.Rule }

// Is reports whether target is ErrURL.
func (e *URLError) Is(target error) bool { return target == ErrURL }

// ParseURL parses etcd://HOST:PORT[,HOST:PORT...]/PREFIX. Each endpoint
// needs a host and a numeric port (1-65535); an IPv6 host is bracketed.
// PREFIX is one or more path segments of printable characters without
// spaces, none empty, "." or ".."; a trailing "/" is dropped. No user,
// query or fragment. Its errors are *URLError.
func ParseURL(raw string) (Target, error) {
	fail := func(format string, args ...any) (Target, error) {
		return Target{}, &URLError{Rule: fmt.Sprintf(format, args...)}
	}
	rest, ok := strings.CutPrefix(raw, Scheme+"://")
	if !ok {
		return fail("want %s://HOST:PORT[,HOST:PORT...]/PREFIX", Scheme)
	}
	if strings.ContainsAny(rest, "?#") {
		return fail("no query or fragment allowed")
	}
	hosts, path, ok := strings.Cut(rest, "/")
	if !ok {
		return fail("no key prefix (want %s://HOST:PORT/PREFIX)", Scheme)
	}
	if strings.Contains(hosts, "@") {
		return fail("no user information allowed")
	}
	var t Target
	for h := range strings.SplitSeq(hosts, ",") {
		host, port, err := net.SplitHostPort(h)
		if err != nil {
			return fail("endpoint %q: not HOST:PORT", h)
		}
		if host == "" || strings.ContainsFunc(host, func(r rune) bool { return !isPrintable(r) || r == '/' || r == '[' || r == ']' }) {
			return fail("endpoint %q: bad host", h)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || port[0] == '0' || port[0] == '+' {
			return fail("endpoint %q: port must be a number from 1 to 65535", h)
		}
		t.Endpoints = append(t.Endpoints, "http://"+net.JoinHostPort(host, port))
	}
	path = strings.TrimSuffix(path, "/")
	if path == "" {
		return fail("empty key prefix")
	}
	if len(path) > maxPrefix {
		return fail("key prefix longer than %d bytes", maxPrefix)
	}
	for seg := range strings.SplitSeq(path, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fail("key prefix %q: empty, \".\" or \"..\" segment", path)
		}
		if strings.ContainsFunc(seg, func(r rune) bool { return !isPrintable(r) }) {
			return fail("key prefix %q: only printable characters without spaces", path)
		}
	}
	t.Prefix = "/" + path
	return t, nil
}

func isPrintable(r rune) bool {
	return r < unicode.MaxASCII && unicode.IsPrint(r) && r != ' '
}

// String returns the target as an etcd URL.
func (t Target) String() string {
	hosts := make([]string, len(t.Endpoints))
	for i, e := range t.Endpoints {
		hosts[i] = strings.TrimPrefix(e, "http://")
	}
	return Scheme + "://" + strings.Join(hosts, ",") + t.Prefix
}

// instancesDir is the directory of instance keys under a prefix, with its
// trailing slash.
func instancesDir(prefix string) string { return prefix + "/instances/" }

// Key returns the key of the instance id under prefix.
func Key(prefix, id string) string { return instancesDir(prefix) + id }

// lbsDir is the directory of balancer keys under a prefix, with its
// trailing slash.
func lbsDir(prefix string) string { return prefix + "/lbs/" }

// LBKey returns the key of the balancer id under prefix.
func LBKey(prefix, id string) string { return lbsDir(prefix) + id }

// LBRecord is the value of a balancer's key, PREFIX/lbs/ID: the balancers
// in front of one fleet split its reported capacity by weight (Peers).
type LBRecord struct {
	// ID names the balancer uniquely among those of the fleet
	// (hostname-pid, say); it is the last segment of its key.
	ID string `json:"id"`
	// Admin is the admin API's address, host:port.
	Admin string `json:"admin"`
	// Weight is the balancer's part of the fleet's capacity relative to
	// the others' (lb.weight): finite and above 0.
	Weight float64 `json:"weight"`
	// Started is when the balancer started.
	Started time.Time `json:"started"`
}

// Validate reports what is wrong with r.
func (r *LBRecord) Validate() error {
	var errs []error
	if err := validateID(r.ID); err != nil {
		errs = append(errs, err)
	}
	if host, port, err := net.SplitHostPort(r.Admin); err != nil || host == "" || port == "" || port == "0" {
		errs = append(errs, fmt.Errorf("admin %q: not a host:port", r.Admin))
	}
	if !(r.Weight > 0) || math.IsInf(r.Weight, 0) {
		errs = append(errs, fmt.Errorf("weight %v: want a finite number above 0", r.Weight))
	}
	return errors.Join(errs...)
}

// validateID checks the id of an instance or balancer.
func validateID(id string) error {
	if id == "" || len(id) > 128 || strings.ContainsFunc(id, func(c rune) bool { return !isPrintable(c) || c == '/' }) {
		return fmt.Errorf("id %q: want 1-128 printable characters without spaces or \"/\"", id)
	}
	return nil
}

// Record is the value of an instance's key: who it is and where.
type Record struct {
	// ID names the instance uniquely in the fleet (hostname-pid, say); it
	// is the last segment of its key.
	ID string `json:"id"`
	// Service is the service port's address, host:port.
	Service string `json:"service"`
	// Health is the health port's address, host:port (the service's
	// address when they share a port).
	Health string `json:"health"`
	// Started is when the instance started.
	Started time.Time `json:"started"`
}

// Validate reports what is wrong with r.
func (r *Record) Validate() error {
	var errs []error
	if err := validateID(r.ID); err != nil {
		errs = append(errs, err)
	}
	for _, a := range []struct{ name, addr string }{{"service", r.Service}, {"health", r.Health}} {
		if host, port, err := net.SplitHostPort(a.addr); err != nil || host == "" || port == "" || port == "0" {
			errs = append(errs, fmt.Errorf("%s %q: not a host:port", a.name, a.addr))
		}
	}
	return errors.Join(errs...)
}

// decodeRecord decodes and validates a key's value.
func decodeRecord(key string, value []byte) (Record, error) {
	var r Record
	if err := json.Unmarshal(value, &r); err != nil {
		return Record{}, fmt.Errorf("key %s: %w", key, err)
	}
	if err := r.Validate(); err != nil {
		return Record{}, fmt.Errorf("key %s: %w", key, err)
	}
	if !strings.HasSuffix(key, "/"+r.ID) {
		return Record{}, fmt.Errorf("key %s: id %q is not the key's last segment", key, r.ID)
	}
	return r, nil
}

// Dial returns an etcd client for t. It does not wait for a connection:
// the first request does (bound it with its context). Close it when done.
// The client's own logs are discarded; Register and Discovery log what
// matters through their slog logger.
func Dial(t Target) (*clientv3.Client, error) {
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:            t.Endpoints,
		DialTimeout:          2 * time.Second,
		DialKeepAliveTime:    5 * time.Second,
		DialKeepAliveTimeout: 2 * time.Second,
		Logger:               zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("etcd client for %s: %w", strings.Join(t.Endpoints, ","), err)
	}
	return cli, nil
}

// discard is the logger of a zero Options.
var discard = slog.New(slog.DiscardHandler)
