package lb

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestPanicSelect(t *testing.T) {
	const (
		routable = iota // routable (and accepting)
		up              // not routable, accepts connections
		dead            // not routable, connect errors
	)
	tests := []struct {
		name      string
		threshold float64
		members   []int
		want      []int
		panic     bool
	}{
		{"all routable", 0.5, []int{routable, routable, routable, routable}, []int{0, 1, 2, 3}, false},
		{"half routable is not panic", 0.5, []int{routable, up, routable, up}, []int{0, 2}, false},
		{"3 of 4 unready: panic spreads over all 4", 0.5, []int{routable, up, up, up}, []int{0, 1, 2, 3}, true},
		{"panic leaves out instances that refuse connections", 0.5, []int{routable, up, dead, dead}, []int{0, 1}, true},
		{"none routable, all up", 0.5, []int{up, up}, []int{0, 1}, true},
		{"all dead: no candidate", 0.5, []int{dead, dead}, nil, true},
		{"threshold 0 disables panic", 0, []int{routable, up, up, up}, []int{0}, false},
		{"threshold 0, none routable", 0, []int{up, up}, nil, false},
		{"threshold 1: any loss panics", 1, []int{routable, routable, up}, []int{0, 1, 2}, true},
		{"empty pool", 0.5, nil, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ms []Member
			for _, k := range tt.members {
				ms = append(ms, Member{Routable: k == routable, AcceptsConnections: k != dead})
			}
			got, panicking := PanicConfig{Threshold: tt.threshold}.Select(ms, nil)
			if panicking != tt.panic {
				t.Errorf("panic = %v, want %v", panicking, tt.panic)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("candidates (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPanicConfigValidate(t *testing.T) {
	for _, th := range []float64{0, 0.5, 1} {
		if err := (PanicConfig{Threshold: th}).Validate(); err != nil {
			t.Errorf("%v: %v", th, err)
		}
	}
	for _, th := range []float64{-0.1, 1.1} {
		if (PanicConfig{Threshold: th}).Validate() == nil {
			t.Errorf("%v: want an error", th)
		}
	}
}
