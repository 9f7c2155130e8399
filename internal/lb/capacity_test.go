package lb

import "testing"

func TestCapacityBound(t *testing.T) {
	tests := []struct {
		name    string
		unknown int
		in      []CapacityInput
		bound   int
		bounded bool
	}{
		{"no instance", 0, nil, 0, true},
		{"warm fleet", 0, []CapacityInput{{100, 1}, {100, 1}, {50, 1}}, 250, true},
		{"whole fleet new: a tenth", 0, []CapacityInput{{100, 0.1}, {100, 0.1}, {100, 0.1}}, 30, true},
		{"one warming", 0, []CapacityInput{{100, 1}, {100, 0.25}}, 125, true},
		{"rounds to nearest", 0, []CapacityInput{{7, 0.1}, {7, 0.1}}, 1, true},
		{"floor of 1", 0, []CapacityInput{{2, 0.1}}, 1, true},
		{"unknown limit: unbounded", 0, []CapacityInput{{100, 1}, {0, 1}}, 0, false},
		{"unknown limit assumed", 32, []CapacityInput{{100, 1}, {0, 0.5}}, 116, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, ok := AdmissionConfig{UnknownInstanceLimit: tt.unknown}.Bound(tt.in)
			if b != tt.bound || ok != tt.bounded {
				t.Errorf("Bound = %d, %v; want %d, %v", b, ok, tt.bound, tt.bounded)
			}
		})
	}
	bad := DefaultAdmissionConfig()
	bad.UnknownInstanceLimit = -1
	if bad.Validate() == nil {
		t.Error("negative unknown_instance_limit must not validate")
	}
}
