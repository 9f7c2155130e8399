// Package membership is what a fleet's registry holds, without the
// client that talks to it: the etcd URL that names the registry
// (ParseURL), the key layout under its prefix, and the records stored
// there (Record for an instance, LBRecord for a load balancer). Package
// registry stores and watches them in etcd; a process that only needs to
// validate or describe a registration (a login instance's configuration,
// a fuzz target) imports this package and links no etcd client.
//
// # Contract
//
//   - An etcd URL is etcd://HOST:PORT[,HOST:PORT...]/PREFIX; every error
//     of ParseURL is a *URLError that matches ErrURL, and a parsed
//     Target's String parses back to the same Target.
//   - Under PREFIX an instance is PREFIX/instances/ID (Key) and a load
//     balancer PREFIX/lbs/ID (LBKey); their values are a Record and an
//     LBRecord in JSON, which DecodeRecord and Validate check.
//   - Everything here is a plain value or a pure function.
package membership

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"strconv"
	"strings"
	"time"
	"unicode"
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

// InstancesDir is the directory of instance keys under a prefix, with its
// trailing slash.
func InstancesDir(prefix string) string { return prefix + "/instances/" }

// Key returns the key of the instance id under prefix.
func Key(prefix, id string) string { return InstancesDir(prefix) + id }

// LBsDir is the directory of balancer keys under a prefix, with its
// trailing slash.
func LBsDir(prefix string) string { return prefix + "/lbs/" }

// LBKey returns the key of the balancer id under prefix.
func LBKey(prefix, id string) string { return LBsDir(prefix) + id }

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
	errs := checkRecord(r.ID, "admin", r.Admin)
	if !(r.Weight > 0) || math.IsInf(r.Weight, 0) {
		errs = append(errs, fmt.Errorf("weight %v: want a finite number above 0", r.Weight))
	}
	return errors.Join(errs...)
}

// ValidateID checks the id of an instance, a balancer or a host: 1-128
// printable characters without spaces or "/", as it is a key's last
// segment.
func ValidateID(id string) error {
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
	return errors.Join(checkRecord(r.ID, "service", r.Service, "health", r.Health)...)
}

// checkRecord checks what every record holds, instance or balancer: its id
// (ValidateID) and its addresses, given as pairs of a field's name and
// its value, each a host:port with a host and a port other than 0, where
// others can reach it. It returns what is wrong, in that order.
func checkRecord(id string, addrs ...string) []error {
	var errs []error
	if err := ValidateID(id); err != nil {
		errs = append(errs, err)
	}
	for i := 0; i+1 < len(addrs); i += 2 {
		name, addr := addrs[i], addrs[i+1]
		if host, port, err := net.SplitHostPort(addr); err != nil || host == "" || port == "" || port == "0" {
			errs = append(errs, fmt.Errorf("%s %q: not a host:port", name, addr))
		}
	}
	return errs
}

// DecodeRecord decodes and validates a key's value.
func DecodeRecord(key string, value []byte) (Record, error) {
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
