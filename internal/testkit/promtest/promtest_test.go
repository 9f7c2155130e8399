//go:build unix

package promtest

import (
	"slices"
	"testing"
)

func TestExprNames(t *testing.T) {
	for _, tt := range []struct {
		expr string
		want []string
	}{
		{`up{job=~"spillway.*"} == 0`, []string{}},
		{`histogram_quantile(0.99, sum by (le) (rate(spillway_lb_request_duration_seconds_bucket{outcome="ok"}[$__rate_interval])))`,
			[]string{"spillway_lb_request_duration_seconds_bucket"}},
		{`spillway_lb_in_flight >= spillway_lb_capacity or spillway_lb_in_flight`, []string{"spillway_lb_capacity", "spillway_lb_in_flight"}},
		{`label_replace(spillway_a, "dst", "spillway_not_a_name", 'src', "spillway_nor_this")`, []string{"spillway_a"}},
	} {
		if got := ExprNames(tt.expr); !slices.Equal(got, tt.want) {
			t.Errorf("ExprNames(%q) = %q, want %q", tt.expr, got, tt.want)
		}
	}
}

func TestNames(t *testing.T) {
	const expo = `# HELP h_seconds A histogram.
# TYPE h_seconds histogram
h_seconds_bucket{le="1"} 1
h_seconds_bucket{le="+Inf"} 1
h_seconds_sum 0.5
h_seconds_count 1
# HELP c_total A counter.
# TYPE c_total counter
c_total 3
`
	names := map[string]bool{}
	Names(t, names, []byte(expo))
	for _, n := range []string{"h_seconds", "h_seconds_bucket", "h_seconds_sum", "h_seconds_count", "c_total"} {
		if !names[n] {
			t.Errorf("Names lacks %s: %v", n, names)
		}
	}
	if len(names) != 5 {
		t.Errorf("Names = %v, want 5 names", names)
	}
}
