package lb

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spillway-dev/spillway/internal/certs"
	"github.com/spillway-dev/spillway/internal/clientip"
	"github.com/spillway-dev/spillway/internal/field"
)

// Validate reports every invalid field at once, each error a *field.Error
// naming its path (`instances[2].health: "x:y": port must be a number
// from 0 to 65535`), quoting the value and stating the rule. Resolve
// first (New does both).
func (c *Config) Validate() error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	add(field.HostPort("listen", c.Listen))
	add(field.SecondListener("admin_listen", c.AdminListen, "listen", c.Listen, ""))
	if strings.ContainsAny(c.AdminTokenEnv, "= \t\n") {
		add(field.New("admin_token_env", c.AdminTokenEnv, "not an environment variable name"))
	}
	if tok := c.AdminToken.Reveal(); tok != "" && len(tok) < minAdminTokenLen {
		add(field.New("admin_token", nil, fmt.Sprintf("must be at least %d characters (value not shown)", minAdminTokenLen)))
	}
	add(validateInstances("instances", c.Instances))
	if c.Discovery != "" {
		if u, err := url.Parse(c.Discovery); err != nil || u.Scheme == "" || !strings.Contains(c.Discovery, "://") {
			add(field.New("discovery", c.Discovery, "not a URL (SCHEME://...)"))
		}
		if len(c.Instances) > 0 {
			add(field.New("discovery", c.Discovery, "set either discovery or instances (--instance), not both"))
		}
	}
	if !(c.Weight > 0) || math.IsInf(c.Weight, 0) {
		add(field.New("weight", c.Weight, "must be a finite number above 0"))
	}
	if _, err := clientip.Parse(c.TrustedProxies); err != nil {
		add(field.Prefix("trusted_proxies", err))
	}

	h := c.HealthCheck
	if h.Interval > 0 && h.Interval < 10*time.Millisecond {
		add(field.New("health_check.interval", h.Interval, "must be at least 10ms"))
	}
	add(field.Prefix("health_check", h.Validate()))
	add(field.Prefix("outlier", c.Outlier.Validate()))
	add(field.Prefix("slow_start", c.SlowStart.Validate()))
	add(field.Prefix("panic", c.Panic.Validate()))
	add(field.Prefix("shedding", c.Shedding.Validate()))
	add(validateTimeouts("timeouts", c.Timeouts))
	add(c.validateRoutes())
	add(field.Prefix("admission", c.Admission.Validate()))
	add(field.Prefix("retry_budget", c.RetryBudget.Validate()))
	add(field.Prefix("access_log", c.AccessLog.Validate()))
	add(c.validateServer())
	if c.Transport.MaxIdleConnsPerHost < 1 {
		add(field.New("transport.max_idle_conns_per_host", c.Transport.MaxIdleConnsPerHost, "must be at least 1"))
	}
	add(field.Positive("transport.idle_conn_timeout", c.Transport.IdleConnTimeout))
	add(c.validateTransportTLS())
	add(field.Prefix("admin_tls", c.AdminTLS.Validate()))
	return errors.Join(errs...)
}

func validateInstances(path string, insts []Instance) error {
	var errs []error
	if len(insts) > MaxInstances {
		errs = append(errs, field.New(path, len(insts), fmt.Sprintf("more than %d instances", MaxInstances)))
	}
	seen := make(map[string]int, len(insts))
	for i, in := range insts {
		p := path + "[" + strconv.Itoa(i) + "]"
		if err := checkDialAddr(p+".service", in.Service); err != nil {
			errs = append(errs, err)
		} else if j, dup := seen[in.Service]; dup {
			errs = append(errs, field.New(p+".service", in.Service, fmt.Sprintf("duplicate of %s[%d].service", path, j)))
		} else {
			seen[in.Service] = i
		}
		if err := checkDialAddr(p+".health", in.Health); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// CheckInstance checks one instance's addresses as the configuration's
// instances are checked: each host:port, with a host and a port from 1 to
// 65535. The errors are *field.Error naming "service" and "health".
// Discovery sources use it to refuse a bad set whole.
func CheckInstance(in Instance) error {
	return errors.Join(checkDialAddr("service", in.Service), checkDialAddr("health", in.Health))
}

// checkDialAddr checks an address the balancer dials: host:port with a
// host and a port from 1 to 65535.
func checkDialAddr(path, s string) error {
	if s == "" {
		return field.New(path, s, "required")
	}
	if err := field.HostPort(path, s); err != nil {
		return err
	}
	host, port, _ := net.SplitHostPort(s)
	if host == "" {
		return field.New(path, s, "needs a host")
	}
	if port == "0" {
		return field.New(path, s, "port must be from 1 to 65535")
	}
	return nil
}

// checkPath checks a request path the balancer sends: absolute, plain.
func checkPath(path, p string, emptyOK bool) error {
	switch {
	case p == "" && emptyOK:
		return nil
	case !strings.HasPrefix(p, "/"):
		return field.New(path, p, `must start with "/"`)
	case strings.ContainsAny(p, " \t\r\n#?"):
		return field.New(path, p, "must be a plain path (no spaces, query or fragment)")
	}
	return nil
}

func validateTimeouts(path string, t TimeoutsConfig) error {
	var errs []error
	errs = append(errs,
		field.Positive(path+".connect", t.Connect),
		field.Positive(path+".response_header", t.ResponseHeader),
		field.Positive(path+".total", t.Total),
		field.Positive(path+".stream_idle", t.StreamIdle))
	if t.ResponseHeader > t.Total && t.Total > 0 {
		errs = append(errs, field.New(path+".response_header", t.ResponseHeader, "must not exceed total ("+t.Total.String()+")"))
	}
	if t.Connect > t.Total && t.Total > 0 {
		errs = append(errs, field.New(path+".connect", t.Connect, "must not exceed total ("+t.Total.String()+")"))
	}
	return errors.Join(errs...)
}

func (c *Config) validateRoutes() error {
	var errs []error
	if len(c.Routes) > MaxRoutes {
		errs = append(errs, field.New("routes", len(c.Routes), fmt.Sprintf("more than %d routes", MaxRoutes)))
	}
	for i, r := range c.Routes {
		p := "routes[" + strconv.Itoa(i) + "]"
		t := c.routeTimeouts(r)
		errs = append(errs, field.NonNegative(p+".connect_timeout", r.ConnectTimeout),
			field.NonNegative(p+".response_header_timeout", r.ResponseHeaderTimeout),
			field.NonNegative(p+".total_timeout", r.TotalTimeout),
			field.NonNegative(p+".stream_idle_timeout", r.StreamIdleTimeout))
		if r.ConnectTimeout >= 0 && r.ResponseHeaderTimeout >= 0 && r.TotalTimeout >= 0 {
			if t.ResponseHeader > t.Total {
				errs = append(errs, field.New(p+".response_header_timeout", t.ResponseHeader, "must not exceed the route's total timeout ("+t.Total.String()+")"))
			}
			if t.Connect > t.Total {
				errs = append(errs, field.New(p+".connect_timeout", t.Connect, "must not exceed the route's total timeout ("+t.Total.String()+")"))
			}
		}
	}
	// Prefixes and dependency names: the route table's own rules.
	if _, err := NewRouteTable(c.shedRoutes()); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (c *Config) validateServer() error {
	s := c.Server
	errs := []error{
		field.Positive("server.read_header_timeout", s.ReadHeaderTimeout),
		field.Positive("server.read_timeout", s.ReadTimeout),
		field.Positive("server.write_timeout", s.WriteTimeout),
		field.Positive("server.idle_timeout", s.IdleTimeout),
		field.NonNegative("server.drain_delay", s.DrainDelay),
		field.NonNegative("server.shutdown_timeout", s.ShutdownTimeout),
		field.Positive("server.body_timeout", s.BodyTimeout),
	}
	if s.MaxHeaderBytes < 1024 || s.MaxHeaderBytes > 1<<20 {
		errs = append(errs, field.New("server.max_header_bytes", s.MaxHeaderBytes, "must be from 1024 to 1048576"))
	}
	switch s.ProxyProtocol {
	case ProxyProtocolOff, ProxyProtocolOptional, ProxyProtocolRequired:
	default:
		errs = append(errs, field.New("server.proxy_protocol", s.ProxyProtocol, "must be off, optional or required"))
	}
	if s.MaxRequestBody < 0 || s.MaxRequestBody > 1<<30 {
		errs = append(errs, field.New("server.max_request_body", s.MaxRequestBody, "must be from 0 (stream bodies) to 1073741824"))
	}
	if s.ReadTimeout > 0 && s.BodyTimeout > s.ReadTimeout {
		errs = append(errs, field.New("server.body_timeout", s.BodyTimeout, "must not exceed read_timeout ("+s.ReadTimeout.String()+")"))
	}
	if s.MaxBufferedBytes < s.MaxRequestBody {
		errs = append(errs, field.New("server.max_buffered_bytes", s.MaxBufferedBytes, "must be at least max_request_body"))
	}
	if s.MaxConnections < 0 {
		errs = append(errs, field.New("server.max_connections", s.MaxConnections, "must not be negative (0 disables the cap)"))
	}
	errs = append(errs, field.Prefix("server.tls", s.TLS.Validate()))
	if s.H2C && s.TLS.Enabled() {
		errs = append(errs, field.New("server.h2c", s.H2C, "not with server.tls: over TLS, HTTP/2 is negotiated by ALPN"))
	}
	total := c.maxTotalTimeout()
	if s.ReadTimeout > 0 && s.ReadTimeout < total {
		errs = append(errs, field.New("server.read_timeout", s.ReadTimeout, "must be at least the longest total timeout ("+total.String()+")"))
	}
	if s.WriteTimeout > 0 && s.WriteTimeout < total {
		errs = append(errs, field.New("server.write_timeout", s.WriteTimeout, "must be at least the longest total timeout ("+total.String()+")"))
	}
	return errors.Join(errs...)
}

func (c *Config) validateTransportTLS() error {
	t := c.Transport
	var errs []error
	switch t.Protocol {
	case ProtocolHTTP1:
	case ProtocolH2:
		if !t.TLS.Enabled {
			errs = append(errs, field.New("transport.protocol", t.Protocol, "needs transport.tls.enabled (h2c is HTTP/2 without TLS)"))
		}
	case ProtocolH2C:
		if t.TLS.Enabled {
			errs = append(errs, field.New("transport.protocol", t.Protocol, "not with transport.tls.enabled (h2 is HTTP/2 over TLS)"))
		}
	default:
		errs = append(errs, field.New("transport.protocol", t.Protocol, "must be http1, h2 or h2c"))
	}
	if !t.TLS.Enabled {
		if t.TLS.CAFile != "" || t.TLS.ServerName != "" || t.TLS.InsecureSkipVerify {
			errs = append(errs, field.New("transport.tls.enabled", t.TLS.Enabled, "must be true for ca_file, server_name or insecure_skip_verify to apply"))
		}
		return errors.Join(errs...)
	}
	if t.TLS.CAFile != "" {
		if _, err := certs.LoadCAs(t.TLS.CAFile); err != nil {
			errs = append(errs, field.New("transport.tls.ca_file", t.TLS.CAFile, err.Error()))
		}
	}
	if t.TLS.InsecureSkipVerify && (t.TLS.CAFile != "" || t.TLS.ServerName != "") {
		errs = append(errs, field.New("transport.tls.insecure_skip_verify", t.TLS.InsecureSkipVerify, "verifies nothing: not with ca_file or server_name"))
	}
	return errors.Join(errs...)
}
