package lb

// This file holds the runtime form of a Config (settings) and what a
// reload rebuilds from it: the edge limiter and the transport.

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spillway-dev/spillway/admission"
	"github.com/spillway-dev/spillway/internal/certs"
	"github.com/spillway-dev/spillway/internal/clientip"
	"github.com/spillway-dev/spillway/internal/h1"
)

// settings is the runtime form of a resolved, validated Config, swapped
// whole by a reload and read per request without a lock.
type settings struct {
	cfg        Config
	routes     []routeTimeouts // longest prefix first
	def        routeTimeouts
	readyPath  string
	reportPath string
	trusted    clientip.Trusted // trusted_proxies
	// server.max_request_body (0: stream), body_timeout, max_buffered_bytes
	maxBody, maxBuffered int64
	bodyTimeout          time.Duration
	// Retry-After of a shed answer.
	shedRetryAfter []string
	// Retry-After of an overloaded answer.
	overloadRetryAfter []string
	maxHeader          time.Duration
	maxConnect         time.Duration
}

type routeTimeouts struct {
	prefix                       string
	connect, header, total, idle time.Duration
	// obs are the route's spillway_lb_request_duration_seconds series,
	// by outcome (metrics.bindRoutes).
	obs *[numOutcomes]prometheus.Observer
}

// timeouts returns the timeouts of the longest route prefix of path.
func (s *settings) timeouts(path string) *routeTimeouts {
	for i := range s.routes {
		if strings.HasPrefix(path, s.routes[i].prefix) {
			return &s.routes[i]
		}
	}
	return &s.def
}

// hasRoute reports whether prefix is one of s's routes.
func (s *settings) hasRoute(prefix string) bool {
	for i := range s.routes {
		if s.routes[i].prefix == prefix {
			return true
		}
	}
	return false
}

func newSettings(c *Config) *settings {
	s := &settings{
		cfg:        *c,
		readyPath:  c.HealthCheck.ReadyPath,
		reportPath: c.HealthCheck.ReportPath,
		def: routeTimeouts{connect: c.Timeouts.Connect, header: c.Timeouts.ResponseHeader, total: c.Timeouts.Total,
			idle: c.Timeouts.StreamIdle},
		trusted:     clientip.MustParse(c.TrustedProxies), // validated
		maxBody:     c.Server.MaxRequestBody,
		maxBuffered: c.Server.MaxBufferedBytes,
		bodyTimeout: c.Server.BodyTimeout,
	}
	s.cfg.Instances = slices.Clone(c.Instances)
	s.cfg.Routes = slices.Clone(c.Routes)
	s.cfg.TrustedProxies = slices.Clone(c.TrustedProxies)
	s.maxHeader, s.maxConnect = s.def.header, s.def.connect
	for _, r := range c.Routes {
		t := c.routeTimeouts(r)
		s.routes = append(s.routes, routeTimeouts{prefix: r.Prefix, connect: t.Connect, header: t.ResponseHeader, total: t.Total, idle: t.StreamIdle})
		s.maxHeader, s.maxConnect = max(s.maxHeader, t.ResponseHeader), max(s.maxConnect, t.Connect)
	}
	slices.SortStableFunc(s.routes, func(a, b routeTimeouts) int { return len(b.prefix) - len(a.prefix) })
	s.shedRetryAfter = []string{strconv.Itoa(max(int((c.Shedding.RetryAfter+time.Second-1)/time.Second), 1))}
	s.overloadRetryAfter = []string{strconv.Itoa(max(int((c.Admission.RetryAfter+time.Second-1)/time.Second), 1))}
	return s
}

func newEdgeLimiter(c *Config, limit int) (*admission.Limiter, error) {
	l, err := admission.New(admission.Config{
		Algorithm:    admission.AlgorithmStatic,
		Limit:        limit,
		QueueSize:    c.Admission.QueueSize,
		QueueTimeout: c.Admission.QueueTimeout,
		RetryAfter:   c.Admission.RetryAfter,
	}, admission.Options{Name: "lb"})
	if err != nil {
		return nil, fmt.Errorf("lb: edge admission: %w", err)
	}
	return l, nil
}

// sender is the transport to instances in force: package h1's for
// HTTP/1.1 (transport.protocol http1, the default), which sends and reads
// on the request's own goroutine, or net/http's for HTTP/2. A reload that
// changes the transport replaces it whole.
type sender struct {
	std *http.Transport
	h1  *h1.Transport // nil unless the protocol is http1
}

func (s *sender) RoundTrip(req *http.Request) (*http.Response, error) {
	if s.h1 != nil {
		return s.h1.RoundTrip(req)
	}
	return s.std.RoundTrip(req)
}

// CloseIdleConnections closes both transports' idle connections.
func (s *sender) CloseIdleConnections() {
	s.std.CloseIdleConnections()
	if s.h1 != nil {
		s.h1.CloseIdleConnections()
	}
}

// newTransport returns the transport to instances: HTTP/1.1 with
// keep-alive (or HTTP/2, transport.protocol; over TLS with tc), every
// timeout and idle limit set. The connect timeout is the request's
// route's (read from the dial context); each attempt's header timeout is
// enforced per request, on its context, and for HTTP/2 net/http's
// response header timeout is a backstop at the longest route's.
func newTransport(c *Config, set *settings, tc *tls.Config) *sender {
	fallback := set.maxConnect
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		timeout := fallback
		if c, ok := ctx.Value(callKey{}).(*call); ok {
			timeout = c.t.connect
		}
		d := net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
		return d.DialContext(ctx, network, addr)
	}
	t := &http.Transport{
		Proxy:                  nil,
		DialContext:            dial,
		MaxIdleConns:           0, // no global cap; per host below
		MaxIdleConnsPerHost:    c.Transport.MaxIdleConnsPerHost,
		IdleConnTimeout:        c.Transport.IdleConnTimeout,
		ResponseHeaderTimeout:  set.maxHeader,
		ExpectContinueTimeout:  time.Second,
		TLSHandshakeTimeout:    5 * time.Second,
		MaxResponseHeaderBytes: 64 << 10,
		DisableCompression:     true,
	}
	setProtocols(t, c.Transport, tc, c.Transport.IdleConnTimeout)
	s := &sender{std: t}
	if c.Transport.Protocol == ProtocolHTTP1 || c.Transport.Protocol == "" {
		s.h1 = &h1.Transport{
			DialContext:            dial,
			TLSClientConfig:        t.TLSClientConfig,
			TLSHandshakeTimeout:    t.TLSHandshakeTimeout,
			MaxIdleConnsPerHost:    t.MaxIdleConnsPerHost,
			IdleConnTimeout:        t.IdleConnTimeout,
			MaxResponseHeaderBytes: t.MaxResponseHeaderBytes,
			ExpectContinueTimeout:  t.ExpectContinueTimeout,
		}
	}
	return s
}

// Reload applies the configuration that load returns, all or nothing: if
// load fails or the result does not validate, the running configuration
// stays and the error is returned. Requests in flight finish under the
// settings they started with. Listen addresses, the admin token and the
// server section need a restart; a change to them is logged and ignored.
func (b *Balancer) Reload(load func() (*Config, error)) (err error) {
	defer func() {
		b.m.reload.Record(err, time.Now())
		if err != nil {
			b.m.reloads[reloadFailure].Add(1)
			b.log.Error("config reload failed; keeping the running configuration", "error", err)
			return
		}
		b.m.reloads[reloadSuccess].Add(1)
	}()
	cfg, err := load()
	if err != nil {
		return err
	}
	cfg.Resolve()
	if err := cfg.Validate(); err != nil {
		return err
	}
	if b.plans != nil && cfg.Shedding.Recovery == RecoveryFeedback {
		return ErrFeedbackNeedsProxy
	}
	routes, err := NewRouteTable(cfg.shedRoutes())
	if err != nil {
		return err
	}
	budget, err := NewRetryBudget(cfg.RetryBudget)
	if err != nil {
		return err
	}
	old := b.set.Load()
	transportIgnored := transportRestartOnly(old.cfg.Transport, &cfg.Transport)
	// The access log's file is opened again (logrotate moved it, or the
	// path changed) before anything is committed; switching the log on
	// or off, or its buffer, needs a restart.
	var reopen func()
	if b.access != nil && cfg.AccessLog.Path != "" {
		out, f, oerr := openAccessLog(cfg.AccessLog.Path)
		if oerr != nil {
			return oerr
		}
		if f != nil {
			defer func() {
				if err != nil {
					f.Close() // not committed
				}
			}()
		}
		reopen = func() { b.access.swap(out, f, cfg.AccessLog.Path) }
	}
	set := newSettings(cfg)
	var lim *admission.Limiter
	if oa, na := old.cfg.Admission, cfg.Admission; oa.QueueSize != na.QueueSize ||
		oa.QueueTimeout != na.QueueTimeout || oa.RetryAfter != na.RetryAfter {
		if lim, err = newEdgeLimiter(cfg, maxEdgeLimit); err != nil {
			return err
		}
	}

	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.pool.Reconfigure(set.cfg); err != nil {
		return err
	}
	// Nothing below fails: the reload is committed.
	b.pool.SetRoutes(routes)
	if old.cfg.RetryBudget != set.cfg.RetryBudget {
		b.budget.Store(budget)
	}
	if lim != nil {
		lim.SetLimit(b.edgeLimit)
		b.limiter.Store(lim)
	}
	if tr := b.transport.Load(); set.maxHeader > tr.std.ResponseHeaderTimeout || old.cfg.Transport != cfg.Transport {
		b.transport.Store(newTransport(cfg, set, b.upTLS))
		tr.CloseIdleConnections()
		b.retired = append(b.retired, tr)
	}
	b.m.bindRoutes(set)
	b.set.Store(set)
	if reopen != nil {
		reopen()
	}
	b.m.pruneRoutes(old, set)
	var ignored []string
	if old.cfg.Listen != cfg.Listen {
		ignored = append(ignored, "listen")
	}
	if old.cfg.AdminListen != cfg.AdminListen {
		ignored = append(ignored, "admin_listen")
	}
	if old.cfg.AdminTokenEnv != cfg.AdminTokenEnv || old.cfg.AdminToken != cfg.AdminToken {
		ignored = append(ignored, "admin token")
	}
	if !old.cfg.AdminTLS.Equal(&cfg.AdminTLS) {
		ignored = append(ignored, "admin_tls")
	}
	if transportIgnored {
		ignored = append(ignored, "transport.protocol and transport.tls")
	}
	if serverChanged(old.cfg.Server, cfg.Server) {
		ignored = append(ignored, "server")
	}
	if old.cfg.AccessLog.restartOnly() != cfg.AccessLog.restartOnly() {
		ignored = append(ignored, "access_log (on or off, buffer_size, flush_interval)")
	}
	discoveryChanged := old.cfg.Discovery != cfg.Discovery
	if discoveryChanged {
		ignored = append(ignored, "discovery (and instances)")
	}
	if len(ignored) > 0 {
		b.log.Warn("config reload: these settings need a restart and were not applied", "settings", strings.Join(ignored, ", "))
	}
	if b.static != nil && !discoveryChanged {
		b.static.Set(cfg.Instances) // the discovery watch applies it
	}
	b.evaluateLocked(time.Now())
	b.log.Info("config reloaded", "instances", len(cfg.Instances), "routes", len(cfg.Routes))
	return nil
}

// serverChanged reports whether the server settings that need a restart
// differ (by value); the body settings apply to the next request.
func serverChanged(a, b ServerConfig) bool {
	if !a.TLS.Equal(&b.TLS) {
		return true
	}
	for _, s := range []*ServerConfig{&a, &b} {
		s.MaxRequestBody, s.BodyTimeout, s.MaxBufferedBytes = 0, 0, 0
		s.TLS = certs.Config{}
	}
	return !reflect.DeepEqual(a, b)
}
