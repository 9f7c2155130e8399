package config

import (
	"fmt"
	"math"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// CheckHostPort reports whether s is a host:port with a numeric port, as a
// listen or dial address. field is the path used in the error.
func CheckHostPort(field, s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%s: %q: not a host:port", field, s)
	}
	_ = host
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%s: %q: port must be a number from 0 to 65535", field, s)
	}
	return nil
}

// CheckHTTPURL reports whether s is an absolute http or https URL that a
// client can call: a host name or address, a numeric port if any, no
// user information (a secret in a URL ends up in logs) and no fragment.
// field is the path used in the error.
func CheckHTTPURL(field, s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Opaque != "" {
		return fmt.Errorf("%s: %q: not an absolute http(s) URL", field, s)
	}
	if u.Hostname() == "" {
		return fmt.Errorf("%s: %q: the URL names no host", field, s)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("%s: %q: port must be a number from 1 to 65535", field, s)
		}
	} else if strings.HasSuffix(u.Host, ":") {
		return fmt.Errorf("%s: %q: empty port", field, s)
	}
	if u.User != nil {
		return fmt.Errorf("%s: %q: user information in a URL is not allowed", field, u.Redacted())
	}
	if u.Fragment != "" || strings.Contains(s, "#") {
		return fmt.Errorf("%s: %q: a fragment is not allowed", field, s)
	}
	return nil
}

// CheckFinite reports whether v is a finite number (not NaN, not ±Inf):
// comparisons with NaN are all false, so a range check alone lets it
// through. field is the path used in the error.
func CheckFinite(field string, v float64) error {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return fmt.Errorf("%s: %v: must be a finite number", field, v)
	}
	return nil
}

// IsLoopback reports whether the host of a host:port address is a loopback
// address or "localhost".
func IsLoopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
