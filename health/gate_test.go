package health

import (
	"errors"
	"strings"
	"sync/atomic"
	"testing"
)

// TestReadinessGate: a closed gate fails /readyz (naming it, not its
// error) and the report's ready, changes the version, and leaves /livez
// and the phase alone; opened again, the instance is ready again.
func TestReadinessGate(t *testing.T) {
	c := New(Options{})
	var closed atomic.Bool
	c.AddReadinessGate("service", func() error {
		if closed.Load() {
			return errors.New("GET http://127.0.0.1:8001/ready: 503 with token=s3cr3t")
		}
		return nil
	})
	c.Start()
	ts := serve(t, c)
	open := c.Report()
	if !open.Ready || !c.Ready() {
		t.Fatalf("open gate: report %+v, Ready %v; want ready", open, c.Ready())
	}

	closed.Store(true)
	if got := get(t, ts, "/readyz"); got.code != 503 || !strings.Contains(got.body, `"service"`) || strings.Contains(got.body, "s3cr3t") {
		t.Errorf("/readyz with a closed gate = %d %q; want 503 naming the gate, not its error", got.code, got.body)
	}
	if got := get(t, ts, "/livez"); got.code != 200 {
		t.Errorf("/livez with a closed gate = %d; want 200", got.code)
	}
	rep := c.Report()
	if rep.Ready || rep.ReadyForSeconds != 0 || rep.Phase != "ready" || c.Ready() {
		t.Errorf("closed gate: report %+v, Ready %v; want not ready, phase ready", rep, c.Ready())
	}
	if rep.Version == open.Version {
		t.Errorf("version %q did not change with the gate", rep.Version)
	}

	closed.Store(false)
	if got := get(t, ts, "/readyz"); got.code != 200 {
		t.Errorf("/readyz with the gate open again = %d; want 200", got.code)
	}
	if rep := c.Report(); !rep.Ready || rep.Version != open.Version {
		t.Errorf("gate open again: report %+v; want ready, version %q", rep, open.Version)
	}
	c.Drain()
	if got := get(t, ts, "/readyz"); got.code != 503 || got.body != "draining\n" {
		t.Errorf("/readyz draining = %d %q; want 503 draining", got.code, got.body)
	}
}

func TestReadinessGatePanics(t *testing.T) {
	c := New(Options{})
	c.AddReadinessGate("a", func() error { return nil })
	for name, f := range map[string]func(){
		"empty name": func() { c.AddReadinessGate("", func() error { return nil }) },
		"nil func":   func() { c.AddReadinessGate("b", nil) },
		"twice":      func() { c.AddReadinessGate("a", func() error { return nil }) },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			f()
		})
	}
}
