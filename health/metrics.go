package health

import "github.com/prometheus/client_golang/prometheus"

// metrics holds the response counters, bound to their labels once so that
// counting a probe does not allocate. They exist, unregistered, even without
// a Registerer.
type metrics struct {
	livezOK, livezFail   prometheus.Counter
	readyzOK, readyzFail prometheus.Counter
	health               prometheus.Counter
}

func newMetrics(s *Server, reg prometheus.Registerer) metrics {
	responses := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "spillway_health_responses_total",
		Help: "Responses of the health endpoints, by path and status code.",
	}, []string{"path", "code"})
	m := metrics{
		livezOK:    responses.WithLabelValues("/livez", "200"),
		livezFail:  responses.WithLabelValues("/livez", "503"),
		readyzOK:   responses.WithLabelValues("/readyz", "200"),
		readyzFail: responses.WithLabelValues("/readyz", "503"),
		health:     responses.WithLabelValues("/health", "200"),
	}
	if reg == nil {
		return m
	}
	ready := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "spillway_health_ready",
		Help: "1 if the instance is ready for traffic (started, warmed up, not draining), else 0.",
	}, func() float64 { return b2f(s.Ready()) })
	draining := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "spillway_health_draining",
		Help: "1 once the instance is draining, else 0.",
	}, func() float64 { return b2f(s.Draining()) })
	reg.MustRegister(responses, ready, draining)
	return m
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
