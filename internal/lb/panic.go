package lb

import (
	"errors"

	"github.com/spillway-dev/spillway/internal/field"
)

// PanicConfig configures the panic threshold: when too few instances are
// routable, routing only to them would pile the whole load on the few left
// (the incident's cascade), so the balancer fails open instead.
type PanicConfig struct {
	// Threshold is the routable share, in [0,1], below which the balancer
	// panics and routes across every instance that accepts connections.
	// Default 0.5 (Envoy healthy_panic_threshold 50%). 0 disables panic
	// mode (the 2018 configuration).
	Threshold float64 `yaml:"threshold"`
}

// DefaultPanicConfig returns the defaults documented on PanicConfig.
func DefaultPanicConfig() PanicConfig { return PanicConfig{Threshold: 0.5} }

// Validate reports every invalid field.
func (c PanicConfig) Validate() error {
	return errors.Join(field.Fraction("threshold", c.Threshold, 0, 1))
}

// InPanic reports whether routable out of total instances is below the
// threshold. Zero instances is not panic (there is nothing to spread to).
func (c PanicConfig) InPanic(routable, total int) bool {
	return total > 0 && float64(routable) < c.Threshold*float64(total)
}

// Member is one instance as the panic decision sees it. Instances that are
// drained (by an operator or because they are shutting down) are not
// members: they count neither as routable nor in the total, and panic never
// routes to them. Pool also leaves out instances that have never been
// healthy (HealthState.Pending), in the spirit of Envoy's
// ignore_new_hosts_until_first_hc: a scale-out of warming instances must
// not tip the fleet into panic, and panic must never send traffic to an
// instance that is still warming up (the incident's flooded replacements).
type Member struct {
	// Routable: healthy, not ejected.
	Routable bool
	// AcceptsConnections: the process answers on its ports, even if it
	// fails its checks (HealthState.AcceptsConnections: anything but a
	// connect error). Not known-dead.
	AcceptsConnections bool
}

// Select appends to dst the indices of members to route to and reports
// whether the balancer is in panic. Outside panic the candidates are the
// routable members; in panic they are every member that is routable or
// accepts connections (ejected instances included: panic overrides
// ejection, as in Envoy).
func (c PanicConfig) Select(members []Member, dst []int) (candidates []int, panicking bool) {
	routable := 0
	for _, m := range members {
		if m.Routable {
			routable++
		}
	}
	panicking = c.InPanic(routable, len(members))
	for i, m := range members {
		if m.Routable || (panicking && m.AcceptsConnections) {
			dst = append(dst, i)
		}
	}
	return dst, panicking
}
