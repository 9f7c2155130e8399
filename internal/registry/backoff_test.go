package registry

import (
	"testing"
)

func TestExponential(t *testing.T) {
	for _, tc := range []struct {
		rnd     float64
		attempt int
		want    string
	}{
		{0, 0, "50ms"}, {0.999999, 0, "99.99995ms"}, {0, 1, "100ms"}, {0, 2, "200ms"},
		{0, 3, "250ms"}, {0, 40, "250ms"}, {1, 1000, "500ms"},
	} {
		b := Exponential(100e6, 500e6, func() float64 { return tc.rnd })
		if got := b(tc.attempt).String(); got != tc.want {
			t.Errorf("rnd %v: Backoff(%d) = %s, want %s", tc.rnd, tc.attempt, got, tc.want)
		}
	}
}

func TestRecordValidate(t *testing.T) {
	ok := Record{ID: "host-1", Service: "127.0.0.1:8001", Health: "127.0.0.1:9001"}
	if err := ok.Validate(); err != nil {
		t.Errorf("Validate(%+v) = %v", ok, err)
	}
	for _, r := range []Record{
		{ID: "", Service: "127.0.0.1:8001", Health: "127.0.0.1:9001"},
		{ID: "a/b", Service: "127.0.0.1:8001", Health: "127.0.0.1:9001"},
		{ID: "a b", Service: "127.0.0.1:8001", Health: "127.0.0.1:9001"},
		{ID: "a", Service: "127.0.0.1", Health: "127.0.0.1:9001"},
		{ID: "a", Service: "127.0.0.1:8001", Health: "127.0.0.1:0"},
	} {
		if err := r.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil", r)
		}
	}
}
