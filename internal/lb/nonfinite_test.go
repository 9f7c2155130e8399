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
	for name, set := range map[string]func(c *FileConfig){
		"jitter":       func(c *FileConfig) { c.HealthCheck.Jitter = &nan },
		"ejected":      func(c *FileConfig) { c.Outlier.MaxEjectedShare = &nan },
		"aggression":   func(c *FileConfig) { c.SlowStart.Aggression = nan },
		"minweight":    func(c *FileConfig) { c.SlowStart.MinWeight = nan },
		"panic":        func(c *FileConfig) { c.Panic.Threshold = &nan },
		"quorum":       func(c *FileConfig) { c.Shedding.Quorum = &nan },
		"ratio":        func(c *FileConfig) { c.RetryBudget.Ratio = &nan },
		"minretry":     func(c *FileConfig) { c.RetryBudget.MinRetriesPerSecond = &nan },
		"inf-minretry": func(c *FileConfig) { inf := math.Inf(1); c.RetryBudget.MinRetriesPerSecond = &inf },
	} {
		c := &FileConfig{}
		set(c)
		c.SetDefaults()
		if err := c.Validate(); err == nil {
			t.Errorf("%s: a non-finite value accepted", name)
		}
	}
}
