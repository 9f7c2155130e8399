package config

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
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

// CheckHTTPURL reports whether s is an absolute http or https URL with a
// host. field is the path used in the error.
func CheckHTTPURL(field, s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%s: %q: not an absolute http(s) URL", field, s)
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
