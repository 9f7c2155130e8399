package lb

import (
	"errors"
	"fmt"
	"time"
)

// Config gathers the settings of every policy in this package. The
// user-facing YAML lives in the config package, which builds a Config,
// fills it from DefaultConfig and calls Validate.
type Config struct {
	Health      HealthConfig
	Outlier     OutlierConfig
	SlowStart   SlowStartConfig
	Panic       PanicConfig
	Shed        ShedConfig
	RetryBudget RetryBudgetConfig
	Capacity    CapacityConfig
}

// DefaultConfig returns spillway's defaults for every policy.
func DefaultConfig() Config {
	return Config{
		Health:      DefaultHealthConfig(),
		Outlier:     DefaultOutlierConfig(),
		SlowStart:   DefaultSlowStartConfig(),
		Panic:       DefaultPanicConfig(),
		Shed:        DefaultShedConfig(),
		RetryBudget: DefaultRetryBudgetConfig(),
		Capacity:    DefaultCapacityConfig(),
	}
}

// Validate reports every invalid field, each error naming its path, as in
// "outlier.base_ejection_time: -1s: must be positive".
func (c Config) Validate() error {
	return errors.Join(
		prefixErr("health", c.Health.Validate()),
		prefixErr("outlier", c.Outlier.Validate()),
		prefixErr("slow_start", c.SlowStart.Validate()),
		prefixErr("panic", c.Panic.Validate()),
		prefixErr("shed", c.Shed.Validate()),
		prefixErr("retry_budget", c.RetryBudget.Validate()),
		prefixErr("capacity", c.Capacity.Validate()),
	)
}

// fieldError is a validation failure of one field.
type fieldError struct {
	path  string
	value any
	rule  string
}

func (e *fieldError) Error() string {
	if s, ok := e.value.(string); ok {
		return fmt.Sprintf("%s: %q: %s", e.path, s, e.rule)
	}
	return fmt.Sprintf("%s: %v: %s", e.path, e.value, e.rule)
}

func fieldErr(path string, value any, rule string) error {
	return &fieldError{path: path, value: value, rule: rule}
}

// prefixErr prepends prefix to the path of every fieldError in err.
func prefixErr(prefix string, err error) error {
	if err == nil {
		return nil
	}
	var out []error
	for _, e := range unjoin(err) {
		var fe *fieldError
		if errors.As(e, &fe) {
			out = append(out, &fieldError{path: prefix + "." + fe.path, value: fe.value, rule: fe.rule})
			continue
		}
		out = append(out, fmt.Errorf("%s: %w", prefix, e))
	}
	return errors.Join(out...)
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, unjoin(e)...)
		}
		return out
	}
	return []error{err}
}

func checkFraction(path string, v float64, lo, hi float64) error {
	if !(v >= lo && v <= hi) { // also rejects NaN
		return fieldErr(path, v, fmt.Sprintf("must be in [%g, %g]", lo, hi))
	}
	return nil
}

func checkPositive(path string, d time.Duration) error {
	if d <= 0 {
		return fieldErr(path, d, "must be positive")
	}
	return nil
}

func checkNonNegative(path string, d time.Duration) error {
	if d < 0 {
		return fieldErr(path, d, "must not be negative")
	}
	return nil
}

func clampFraction(v, lo, hi float64) float64 {
	if !(v >= lo) { // NaN too
		return lo
	}
	if v > hi {
		return hi
	}
	return v
}
