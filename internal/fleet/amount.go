package fleet

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/spillway-dev/spillway/internal/field"
)

// Amount is a number of instances: a count (2), or a share of the fleet
// written as a percentage ("25%"), as Kubernetes writes maxUnavailable.
// The zero Amount is the count 0.
type Amount struct {
	n       int
	percent float64
	isPct   bool
}

// Count is the Amount n.
func Count(n int) Amount { return Amount{n: n} }

// Percent is the Amount p% of the fleet.
func Percent(p float64) Amount { return Amount{percent: p, isPct: true} }

// Of returns the amount for a fleet of size instances: the count, or the
// percentage of size rounded down and at least 1 when the percentage is
// not 0.
func (a Amount) Of(size int) int {
	if !a.isPct {
		return a.n
	}
	if a.percent <= 0 {
		return 0
	}
	return max(1, int(math.Floor(a.percent*float64(size)/100)))
}

// IsZero reports whether the amount is 0 (a count or a percentage).
func (a Amount) IsZero() bool { return (!a.isPct && a.n == 0) || (a.isPct && a.percent == 0) }

func (a Amount) String() string {
	if a.isPct {
		return strconv.FormatFloat(a.percent, 'g', -1, 64) + "%"
	}
	return strconv.Itoa(a.n)
}

func (a Amount) validate(path string) error {
	if a.isPct {
		if !(a.percent >= 0 && a.percent <= 100) {
			return field.New(path, a.String(), "a percentage must be from 0% to 100%")
		}
		return nil
	}
	if a.n < 0 || a.n > MaxSize {
		return field.New(path, a.n, fmt.Sprintf("must be from 0 to %d, or a percentage such as \"25%%\"", MaxSize))
	}
	return nil
}

var errAmount = errors.New(`want a count such as 2 or a percentage such as "25%"`)

// UnmarshalYAML reads 2 or "25%".
func (a *Amount) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: %w", n.Line, errAmount)
	}
	if p, ok := strings.CutSuffix(n.Value, "%"); ok {
		v, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("line %d: %q: %w", n.Line, n.Value, errAmount)
		}
		*a = Percent(v)
		return nil
	}
	v, err := strconv.Atoi(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q: %w", n.Line, n.Value, errAmount)
	}
	*a = Count(v)
	return nil
}

// MarshalYAML writes 2 or "25%".
func (a Amount) MarshalYAML() (any, error) {
	if a.isPct {
		return a.String(), nil
	}
	return a.n, nil
}

// Equal reports whether a and b are the same amount (go-cmp uses it).
func (a Amount) Equal(b Amount) bool { return a == b }
