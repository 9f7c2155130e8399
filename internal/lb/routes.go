package lb

// This file holds the routes' table of dependencies (which dependencies a
// request's path needs) and the rule for a dependency's name.

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/spillway-dev/spillway/internal/field"
)

// Route maps a path prefix to the dependencies its requests need.
type Route struct {
	// Prefix matches request paths by plain string prefix ("/api/" matches
	// "/api/login"); the longest matching prefix wins.
	Prefix string
	// Dependencies are the dependencies the route needs; empty means
	// none, so the route is never shed. Paths that match no route need
	// every known dependency.
	Dependencies []string
	// All means the route needs every known dependency, like a path that
	// matches no route; Dependencies is then ignored. It lets a route that
	// exists for another reason (its timeouts) keep the default.
	All bool
}

// RouteTable answers which dependencies a path needs. Immutable; safe for
// concurrent use.
type RouteTable struct {
	routes []Route // longest prefix first
}

// NewRouteTable validates routes and returns their table. Prefixes must
// start with "/" and be unique; dependency names must not be empty.
func NewRouteTable(routes []Route) (*RouteTable, error) {
	t := &RouteTable{}
	seen := map[string]bool{}
	var errs []error
	for i, r := range routes {
		path := fmt.Sprintf("routes[%d]", i)
		switch {
		case !strings.HasPrefix(r.Prefix, "/"):
			errs = append(errs, field.New(path+".prefix", r.Prefix, `must start with "/"`))
		case seen[r.Prefix]:
			errs = append(errs, field.New(path+".prefix", r.Prefix, "duplicate prefix"))
		}
		seen[r.Prefix] = true
		if r.All {
			t.routes = append(t.routes, Route{Prefix: r.Prefix, All: true})
			continue
		}
		for j, d := range r.Dependencies {
			switch {
			case d == "":
				errs = append(errs, field.New(fmt.Sprintf("%s.dependencies[%d]", path, j), d, "must not be empty"))
			case !ValidDependencyName(d):
				errs = append(errs, field.New(fmt.Sprintf("%s.dependencies[%d]", path, j), d, dependencyNameRule))
			}
		}
		t.routes = append(t.routes, Route{Prefix: r.Prefix, Dependencies: slices.Clone(r.Dependencies)})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	slices.SortStableFunc(t.routes, func(a, b Route) int { return len(b.Prefix) - len(a.Prefix) })
	return t, nil
}

// match returns the index of the longest route prefix of path, or -1.
func (t *RouteTable) match(path string) int {
	if t == nil {
		return -1
	}
	for i := range t.routes {
		if strings.HasPrefix(path, t.routes[i].Prefix) {
			return i
		}
	}
	return -1
}

// Lookup returns the dependencies path needs; all is true when no route
// matches and the path therefore needs every dependency. deps must not be
// modified.
func (t *RouteTable) Lookup(path string) (deps []string, all bool) {
	if i := t.match(path); i >= 0 && !t.routes[i].All {
		return t.routes[i].Dependencies, false
	}
	return nil, true
}

// MaxDependencyName bounds a dependency's name.
const MaxDependencyName = 64

const dependencyNameRule = `must be 1 to 64 ASCII letters, digits and "_.:/-", starting with a letter or digit`

// ValidDependencyName reports whether name may name a dependency: 1 to
// MaxDependencyName bytes of ASCII letters, digits and "_.:/-", starting
// with a letter or digit. Names come from instances' reports and from the
// admin API: outside input that ends up in metric labels, logs and JSON,
// so anything else is refused (an override) or ignored (a report entry)
// rather than allowed to break the metrics exposition.
func ValidDependencyName(name string) bool {
	if name == "" || len(name) > MaxDependencyName {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case i > 0 && strings.IndexByte("_.:/-", c) >= 0:
		default:
			return false
		}
	}
	return true
}
