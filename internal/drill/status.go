package drill

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/spillway-dev/spillway/internal/fleet"
	"github.com/spillway-dev/spillway/internal/lb"
	"github.com/spillway-dev/spillway/internal/login"
)

// Sample is the system's state as the drill saw it at one moment, from the
// admin API of `spillway up`.
type Sample struct {
	// T is the time since the load's start, in seconds.
	T float64 `json:"t"`
	// Running is the number of instances the fleet announces: started and
	// not being stopped (spillway_fleet_instances).
	Running int `json:"running"`
	// Routable is the number the load balancer routes to.
	Routable int `json:"routable"`
	// Replacements counts health-based replacements since the fleet
	// started (spillway_fleet_replacements_total, reasons liveness and
	// traffic).
	Replacements int `json:"replacements"`
	// Restarts counts processes started again after they exited unasked.
	Restarts int `json:"restarts"`
	// Shedding is the edge's state for the backend: ok, shedding or
	// recovering.
	Shedding string `json:"shedding"`
	// Panic: the load balancer routes across every instance that accepts
	// connections.
	Panic bool `json:"panic,omitempty"`
}

// admin reads the admin API of one `spillway up`.
type admin struct {
	base   string // http://host:port
	client *http.Client
}

func newAdmin(addr string) *admin {
	return &admin{base: "http://" + addr, client: &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 4}}}
}

func (a *admin) close() { a.client.CloseIdleConnections() }

func (a *admin) get(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.base+path, nil)
	if err != nil {
		return err
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return fmt.Errorf("GET %s: status %d", path, resp.StatusCode)
	}
	switch v := v.(type) {
	case *[]byte:
		*v, err = io.ReadAll(io.LimitReader(resp.Body, 8<<20))
		return err
	default:
		return json.NewDecoder(io.LimitReader(resp.Body, 8<<20)).Decode(v)
	}
}

// shedding returns the edge's state for the login backend in st.
func shedding(st *lb.Status) string {
	for _, d := range st.Dependencies {
		if d.Name == login.BackendName {
			return string(d.State)
		}
	}
	return string(lb.ShedOK)
}

// fleetMetrics are the fleet's figures in GET /metrics.
type fleetMetrics struct {
	instances, replacements, restarts int
}

func (a *admin) metrics(ctx context.Context) (fleetMetrics, error) {
	var body []byte
	if err := a.get(ctx, "/metrics", &body); err != nil {
		return fleetMetrics{}, err
	}
	return parseFleetMetrics(string(body))
}

// parseFleetMetrics reads the fleet's series from Prometheus' text format.
func parseFleetMetrics(text string) (fleetMetrics, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		return fleetMetrics{}, fmt.Errorf("parse metrics: %w", err)
	}
	samples, err := expfmt.ExtractSamples(&expfmt.DecodeOptions{}, slices.Collect(maps.Values(fams))...)
	if err != nil {
		return fleetMetrics{}, fmt.Errorf("parse metrics: %w", err)
	}
	var m fleetMetrics
	for _, s := range samples {
		v := int(s.Value)
		switch s.Metric[model.MetricNameLabel] {
		case "spillway_fleet_instances":
			m.instances = v
		case "spillway_fleet_replacements_total":
			if r := s.Metric["reason"]; r == fleet.ReasonLiveness || r == fleet.ReasonTraffic {
				m.replacements += v
			}
		case "spillway_fleet_restarts_total":
			m.restarts = v
		}
	}
	return m, nil
}

// sample reads one Sample.
func (a *admin) sample(ctx context.Context, t0 time.Time) (Sample, error) {
	var st lb.Status
	if err := a.get(ctx, "/status", &st); err != nil {
		return Sample{}, err
	}
	m, err := a.metrics(ctx)
	if err != nil {
		return Sample{}, err
	}
	return Sample{
		T:        time.Since(t0).Seconds(),
		Running:  m.instances,
		Routable: st.Routing.Routable,
		Shedding: shedding(&st),
		Panic:    st.Panic,

		Replacements: m.replacements,
		Restarts:     m.restarts,
	}, nil
}

// fleetProcess is an instance process in GET /api/state.
type fleetProcess struct {
	ID    string `json:"id"`
	Slot  int    `json:"slot"`
	PID   int    `json:"pid"`
	State string `json:"state"`
}

// processes returns the fleet's processes.
func (a *admin) processes(ctx context.Context) ([]fleetProcess, error) {
	var st struct {
		Fleet struct {
			Instances []fleetProcess `json:"instances"`
		} `json:"fleet"`
	}
	if err := a.get(ctx, "/api/state", &st); err != nil {
		return nil, err
	}
	return st.Fleet.Instances, nil
}

// poller samples the system every interval until its context is done.
type poller struct {
	a  *admin
	t0 time.Time

	mu      sync.Mutex
	samples []Sample
}

func (p *poller) run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		s, err := p.a.sample(ctx, p.t0)
		if err == nil {
			p.mu.Lock()
			p.samples = append(p.samples, s)
			p.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// last returns the latest sample, if any.
func (p *poller) last() (Sample, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.samples) == 0 {
		return Sample{}, false
	}
	return p.samples[len(p.samples)-1], true
}

func (p *poller) all() []Sample {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Sample(nil), p.samples...)
}
