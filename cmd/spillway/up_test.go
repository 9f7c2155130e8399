package main

import (
	"context"
	"strings"
	"testing"
)

// TestUpDataPlaneFlag: --data-plane takes lb or haproxy; haproxy without
// the binary says how to install it, before anything starts.
func TestUpDataPlaneFlag(t *testing.T) {
	t.Setenv("PATH", t.TempDir()) // no haproxy there
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"up", "--data-plane", "envoy"}, `--data-plane "envoy": want lb or haproxy`},
		{[]string{"up", "--data-plane", "haproxy"}, "install haproxy (apt-get install haproxy)"},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var out, errOut strings.Builder
			code := run(context.Background(), tt.args, &out, &errOut)
			if code == 0 || !strings.Contains(errOut.String(), tt.want) {
				t.Fatalf("exit %d, stderr %q; want non-zero and %q", code, errOut.String(), tt.want)
			}
		})
	}
}
