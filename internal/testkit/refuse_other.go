//go:build !unix

package testkit

import "testing"

// RefusingAddr returns a loopback host:port that refused connections a
// moment ago (on unix, one that refuses them for the whole test).
func RefusingAddr(t testing.TB) string {
	t.Helper()
	return FreePort(t)
}
