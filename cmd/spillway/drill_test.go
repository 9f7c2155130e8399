package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// TestDrillRefusesBadInput checks the drill's command line and scenario
// errors; the drill itself runs in internal/drill's tests.
func TestDrillRefusesBadInput(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		usage bool   // a flag error (exit 2) rather than a failure
		want  string // in stderr or the error
	}{
		{"bad profile", []string{"--profile", "2019"}, true, `profile "2019": must be 2018, spillway or both`},
		{"bad time scale", []string{"--time-scale", "0"}, true, `--time-scale: 0: must be in (0, 10]`},
		{"extra argument", []string{"now"}, true, `unexpected argument "now"`},
		{"bad data plane", []string{"--data-plane", "envoy"}, true, `--data-plane "envoy": want lb or haproxy`},
		{"unknown field", []string{"--scenario", "../../internal/drill/testdata/unknown-field.bad.yaml"}, false, "line 4: field limt not found"},
		{"invalid scenario", []string{"--scenario", "../../internal/drill/testdata/bad-values.bad.yaml"}, false, `phases[1].backend: "hung"`},
		{"missing file", []string{"--scenario", "testdata/no-such-scenario.yaml"}, false, "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := runDrill(t.Context(), append(tt.args, "--out", t.TempDir()), &stdout, &stderr)
			if tt.usage != errors.Is(err, errUsage) || err == nil {
				t.Fatalf("err = %v, usage error wanted: %v", err, tt.usage)
			}
			if got := stderr.String() + err.Error(); !strings.Contains(got, tt.want) {
				t.Errorf("stderr and error lack %q:\n%s", tt.want, got)
			}
		})
	}
}
