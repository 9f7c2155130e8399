// Package field is how spillway's configuration reports what is wrong
// with it: Error names a field by its path from the top of the file
// ("lb.health_check.timeout"), quotes the value and states the rule;
// Prefix places a section's errors under the section's name; and the
// checks every section shares (durations, fractions, finite numbers,
// host:port addresses, HTTP URLs) return such errors.
//
// Validate methods collect every problem and join them (errors.Join), so
// a file with three mistakes reports three lines. Everything here is a
// pure function and safe for concurrent use.
package field

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Error is a field that fails its rule.
type Error struct {
	// Path is the field's path, dot-separated, with list indexes:
	// "instances[2].health".
	Path string
	// Value is the offending value (shown quoted when it is a string).
	// Nil when it must not be shown (a secret).
	Value any
	// Rule says what the value must be.
	Rule string
}

// New returns the Error of the field at path.
func New(path string, value any, rule string) *Error {
	return &Error{Path: path, Value: value, Rule: rule}
}

func (e *Error) Error() string {
	switch v := e.Value.(type) {
	case nil:
		return fmt.Sprintf("%s: %s", e.Path, e.Rule)
	case string:
		return fmt.Sprintf("%s: %q: %s", e.Path, v, e.Rule)
	default:
		return fmt.Sprintf("%s: %v: %s", e.Path, v, e.Rule)
	}
}

// Prefix puts every error joined in err under prefix, a section's path:
// an *Error's path becomes prefix + "." + path (or prefix + path when the
// path starts with "["); any other error is wrapped as "prefix: err". It
// returns nil for a nil err.
func Prefix(prefix string, err error) error {
	if err == nil {
		return nil
	}
	var out []error
	for _, e := range Unjoin(err) {
		var fe *Error
		if errors.As(e, &fe) {
			p := fe.Path
			switch {
			case p == "":
				p = prefix
			case strings.HasPrefix(p, "["):
				p = prefix + p
			default:
				p = prefix + "." + p
			}
			out = append(out, &Error{Path: p, Value: fe.Value, Rule: fe.Rule})
			continue
		}
		out = append(out, fmt.Errorf("%s: %w", prefix, e))
	}
	return errors.Join(out...)
}

// Unjoin returns the errors joined in err, flattened.
func Unjoin(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, Unjoin(e)...)
		}
		return out
	}
	return []error{err}
}

// Positive checks d > 0.
func Positive(path string, d time.Duration) error {
	if d <= 0 {
		return New(path, d, "must be positive")
	}
	return nil
}

// NonNegative checks d ≥ 0.
func NonNegative(path string, d time.Duration) error {
	if d < 0 {
		return New(path, d, "must not be negative")
	}
	return nil
}

// Fraction checks lo ≤ v ≤ hi; NaN fails.
func Fraction(path string, v, lo, hi float64) error {
	if !(v >= lo && v <= hi) {
		return New(path, v, fmt.Sprintf("must be in [%g, %g]", lo, hi))
	}
	return nil
}

// Finite checks that v is a number: not NaN, not ±Inf (comparisons with
// NaN are all false, so a range check alone lets it through).
func Finite(path string, v float64) error {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return New(path, v, "must be a finite number")
	}
	return nil
}

// Between checks lo ≤ v ≤ hi for an integer.
func Between(path string, v, lo, hi int) error {
	if v < lo || v > hi {
		return New(path, v, fmt.Sprintf("must be from %d to %d", lo, hi))
	}
	return nil
}

// HostPort checks that s is a host:port with a numeric port, as a listen
// or dial address.
func HostPort(path, s string) error {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return New(path, s, "not a host:port")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return New(path, s, "port must be a number from 0 to 65535")
	}
	return nil
}

// SecondListener checks a second listen address beside first (named
// firstPath): a host:port (HostPort) other than first, unless both take
// a free port (":0"). hint, if any, is said after the rule.
func SecondListener(path, s, firstPath, first, hint string) error {
	if err := HostPort(path, s); err != nil {
		return err
	}
	if s == first && !strings.HasSuffix(s, ":0") {
		rule := "must differ from " + firstPath
		if hint != "" {
			rule += " (" + hint + ")"
		}
		return New(path, s, rule)
	}
	return nil
}

// HTTPURL checks that s is an absolute http or https URL a client can
// call: a host name or address, a numeric port if any, no user
// information (a secret in a URL ends up in logs) and no fragment.
func HTTPURL(path, s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Opaque != "" {
		return New(path, s, "not an absolute http(s) URL")
	}
	if u.Hostname() == "" {
		return New(path, s, "the URL names no host")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return New(path, s, "port must be a number from 1 to 65535")
		}
	} else if strings.HasSuffix(u.Host, ":") {
		return New(path, s, "empty port")
	}
	if u.User != nil {
		return New(path, u.Redacted(), "user information in a URL is not allowed")
	}
	if u.Fragment != "" || strings.Contains(s, "#") {
		return New(path, s, "a fragment is not allowed")
	}
	return nil
}
