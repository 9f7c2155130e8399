package lb

import (
	"math"
	"testing"
)

// TestValidateRefusesNonFinite: NaN passes every range check written as
// "v < lo || v > hi"; each float setting must refuse it (and ±Inf where
// unbounded).
func TestValidateRefusesNonFinite(t *testing.T) {
	nan := math.NaN()
	for name, set := range map[string]func(c *Config){
		"jitter":       func(c *Config) { c.HealthCheck.Jitter = nan },
		"ejected":      func(c *Config) { c.Outlier.MaxEjectedShare = nan },
		"aggression":   func(c *Config) { c.SlowStart.Aggression = nan },
		"minweight":    func(c *Config) { c.SlowStart.MinWeight = nan },
		"panic":        func(c *Config) { c.Panic.Threshold = nan },
		"quorum":       func(c *Config) { c.Shedding.Quorum = nan },
		"ratio":        func(c *Config) { c.RetryBudget.Ratio = nan },
		"minretry":     func(c *Config) { c.RetryBudget.MinRetriesPerSecond = nan },
		"inf-minretry": func(c *Config) { c.RetryBudget.MinRetriesPerSecond = math.Inf(1) },
	} {
		c := DefaultConfig()
		set(&c)
		c.Resolve()
		if err := c.Validate(); err == nil {
			t.Errorf("%s: a non-finite value accepted", name)
		}
	}
}
