package lb

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/spillway-dev/spillway/internal/config"
	"github.com/spillway-dev/spillway/internal/connlimit"
)

// FileConfig is the file-facing configuration of `spillway lb`: the `lb:`
// section of a spillway file. Load it as the config package does: strict
// decode, SetDefaults, Validate; New builds a Balancer only from a value
// that passes Validate.
//
// Fields whose zero value is a meaningful setting (a panic threshold of 0,
// a slow-start window of 0, a quorum of 0: the 2018 configuration) are
// pointers: absent means the default, an explicit 0 means 0.
type FileConfig struct {
	// Listen is the proxy's address. Default "127.0.0.1:8080".
	Listen string `yaml:"listen"`
	// AdminListen is the admin API's address (/status, /metrics, drain,
	// shedding overrides). Default "127.0.0.1:8081". On a non-loopback
	// address reads need the admin token too.
	AdminListen string `yaml:"admin_listen"`
	// AdminTokenEnv names the environment variable holding the admin
	// token. Default "SPILLWAY_ADMIN_TOKEN". The --admin-token flag wins
	// over it; with neither (and no admin_token), a token is generated at
	// start and printed to stderr.
	AdminTokenEnv string `yaml:"admin_token_env"`
	// AdminToken is the admin token itself. Prefer AdminTokenEnv: a secret
	// in a file ends up in backups and repositories. At least 16
	// characters. Never logged or marshalled.
	AdminToken Secret `yaml:"admin_token,omitempty"`

	// Instances is the static instance list (a fleet may replace it at run
	// time through a Discovery). Reloaded on SIGHUP.
	Instances []Instance `yaml:"instances"`

	// TrustedProxies are the peers (IP addresses or CIDR prefixes) whose
	// forwarding headers are kept: from one of them the balancer appends
	// the peer to X-Forwarded-For, keeps X-Forwarded-Proto,
	// X-Forwarded-Host and Forwarded (appending its own Forwarded element
	// when there is one); from any other peer it replaces all four with
	// what it sees itself. With server.proxy_protocol on, they are also
	// the only peers whose PROXY header is accepted. Default none: the
	// balancer is the edge. Reloaded on SIGHUP.
	TrustedProxies []string `yaml:"trusted_proxies"`

	// HealthCheck configures active health checks of each health port.
	HealthCheck HealthCheckSection `yaml:"health_check"`
	// Outlier configures passive outlier ejection.
	Outlier OutlierSection `yaml:"outlier"`
	// SlowStart configures the weight ramp of a newly routable instance.
	SlowStart SlowStartSection `yaml:"slow_start"`
	// Panic configures the panic threshold.
	Panic PanicSection `yaml:"panic"`
	// Shedding configures dependency-aware edge shedding.
	Shedding SheddingSection `yaml:"shedding"`
	// Timeouts apply to paths that match no route, and to route fields
	// left at 0.
	Timeouts TimeoutsSection `yaml:"timeouts"`
	// Routes map path prefixes to the dependencies they need and their
	// timeouts. The longest matching prefix wins.
	Routes []RouteSection `yaml:"routes"`
	// Admission configures the edge bound on proxied requests in flight.
	Admission EdgeAdmissionSection `yaml:"admission"`
	// RetryBudget bounds retries to a share of requests.
	RetryBudget RetryBudgetSection `yaml:"retry_budget"`
	// Server configures the proxy's own HTTP server (client side).
	Server ServerSection `yaml:"server"`
	// Transport configures the connections to instances.
	Transport TransportSection `yaml:"transport"`
}

// Instance is one instance behind the balancer: where its requests go and
// where its health is checked. The service address is its id.
type Instance struct {
	// Service is the instance's service address (host:port), where
	// requests are proxied.
	Service string `yaml:"service" json:"service"`
	// Health is its health port's address (host:port), where ready_path
	// and report_path are polled. It may equal Service (the 2018
	// configuration: health checked on the service port).
	Health string `yaml:"health" json:"health"`
}

// HealthCheckSection configures active health checks (Envoy health_checks,
// HAProxy check). See HealthConfig for how thresholds act.
type HealthCheckSection struct {
	// Interval between two checks of one instance. Default 2s (HAProxy
	// inter). At least 10ms.
	Interval time.Duration `yaml:"interval"`
	// Timeout of one check (and of one report fetch). Default 1s, or
	// Interval if that is shorter. At most Interval.
	Timeout time.Duration `yaml:"timeout"`
	// Jitter spreads checks: each wait is Interval × (1 ± Jitter), in
	// [0, 0.5]. Default 0.1.
	Jitter *float64 `yaml:"jitter"`
	// HealthyThreshold: consecutive passes that return an instance that
	// went unhealthy (HAProxy rise). Default 2. A new instance needs one.
	HealthyThreshold int `yaml:"healthy_threshold"`
	// UnhealthyThreshold: consecutive failures that take a healthy
	// instance out (HAProxy fall). Default 3.
	UnhealthyThreshold int `yaml:"unhealthy_threshold"`
	// ReadyPath is GET on the health address for routing: 2xx passes.
	// Default "/readyz". Any path works (the 2018 configuration checks the
	// service port).
	ReadyPath string `yaml:"ready_path"`
	// ReportPath is GET on the health address for the JSON dependency
	// report (health.Report), fetched after each check that reached the
	// instance. Default "/health". "" fetches none: no shedding votes and
	// no reported capacity (the 2018 configuration).
	ReportPath *string `yaml:"report_path"`
	// ReportMaxAge is how old a report may be and still count. Default
	// 5 × Interval (10s with the default interval).
	ReportMaxAge time.Duration `yaml:"report_max_age"`
}

// OutlierSection configures passive outlier ejection (Envoy
// outlier_detection). See OutlierConfig.
type OutlierSection struct {
	// ConsecutiveGatewayFailures ejects an instance after this many
	// gateway failures in a row (connect refused or reset, response header
	// timeout, 502/503/504 without X-Spillway-Reason). Default 5. 0
	// disables ejection.
	ConsecutiveGatewayFailures *int `yaml:"consecutive_gateway_failures"`
	// BaseEjectionTime is the first ejection's length; the n-th lasts n ×
	// it. Default 10s.
	BaseEjectionTime time.Duration `yaml:"base_ejection_time"`
	// MaxEjectionTime caps one ejection. Default 300s.
	MaxEjectionTime time.Duration `yaml:"max_ejection_time"`
	// MaxEjectedShare caps the share of instances ejected at once, in
	// [0,1]. Default 0.5.
	MaxEjectedShare *float64 `yaml:"max_ejected_share"`
}

// SlowStartSection configures slow start (Envoy slow_start_config, HAProxy
// slowstart). See SlowStartConfig.
type SlowStartSection struct {
	// Window is the ramp's length. Default 10s. 0 disables slow start.
	Window *time.Duration `yaml:"window"`
	// Aggression shapes the ramp (1 linear). Default 1.
	Aggression float64 `yaml:"aggression"`
	// MinWeight is the weight at the ramp's start, in (0,1]. Default 0.1.
	MinWeight float64 `yaml:"min_weight"`
}

// PanicSection configures the panic threshold (Envoy
// healthy_panic_threshold).
type PanicSection struct {
	// Threshold: below this routable share the balancer routes across
	// every instance that accepts connections. Default 0.5. 0 disables
	// panic mode.
	Threshold *float64 `yaml:"threshold"`
}

// SheddingSection configures dependency-aware edge shedding. See
// ShedConfig.
type SheddingSection struct {
	// Quorum is the share of ready instances that must report a dependency
	// down to shed it. Default 0.5. 0 disables automatic shedding (manual
	// overrides still work): the 2018 configuration.
	Quorum *float64 `yaml:"quorum"`
	// RecoveryWindow is how long the admitted share takes to ramp from 0
	// to 1 once the dependency is back. Default 5s. 0 reopens at once.
	RecoveryWindow *time.Duration `yaml:"recovery_window"`
	// MaxRecoveryWindow caps the doubling of the window after a ramp cut
	// short. Default 8 × RecoveryWindow (40s).
	MaxRecoveryWindow time.Duration `yaml:"max_recovery_window"`
	// RetryAfter is the base of a shed answer's Retry-After header: each
	// answer carries a whole number of seconds drawn uniformly from
	// [RetryAfter, 2 × RetryAfter], so shed clients do not come back in
	// lockstep. Default 1s.
	RetryAfter time.Duration `yaml:"retry_after"`
}

// TimeoutsSection holds the timeouts of one route.
type TimeoutsSection struct {
	// Connect bounds the TCP connect to an instance. Default 1s.
	Connect time.Duration `yaml:"connect"`
	// ResponseHeader bounds one attempt, from its start (connect
	// included) to the response's headers. Default 10s. At most Total.
	ResponseHeader time.Duration `yaml:"response_header"`
	// Total bounds the whole proxied request, retry and response body
	// included: past it the request is cut off, with a 504 if nothing was
	// sent yet. Default 15s (or ResponseHeader if that is longer). It
	// does not apply to a stream once its headers are in (see StreamIdle).
	Total time.Duration `yaml:"total"`
	// StreamIdle bounds a stream's silence instead of its length: an
	// upgraded connection (101 Switching Protocols: WebSocket) or a
	// Server-Sent Events response (Content-Type text/event-stream) is
	// closed once no byte has passed either way for this long, and the
	// total timeout does not apply to it after its headers. Default 60s.
	StreamIdle time.Duration `yaml:"stream_idle"`
}

// RouteSection maps a path prefix to the dependencies its requests need
// and its timeouts.
type RouteSection struct {
	// Prefix matches request paths by plain string prefix; it must start
	// with "/".
	Prefix string `yaml:"prefix"`
	// Dependencies the route needs: requests are shed while any of them
	// is. Absent: every dependency, as for paths that match no route.
	// An empty list ([]): none, the route is never shed.
	Dependencies []string `yaml:"dependencies"`
	// ConnectTimeout, ResponseHeaderTimeout, TotalTimeout and
	// StreamIdleTimeout override `timeouts` for this route; 0 takes the
	// value from there (a connect or response header timeout taken from
	// there is capped at the route's total timeout).
	ConnectTimeout        time.Duration `yaml:"connect_timeout"`
	ResponseHeaderTimeout time.Duration `yaml:"response_header_timeout"`
	TotalTimeout          time.Duration `yaml:"total_timeout"`
	StreamIdleTimeout     time.Duration `yaml:"stream_idle_timeout"`
}

// EdgeAdmissionSection configures the edge bound on proxied requests in
// flight: the sum over routable instances of each one's reported
// concurrency limit × its slow-start weight (see CapacityConfig).
type EdgeAdmissionSection struct {
	// QueueSize is how many requests may wait for a slot once the bound
	// is reached; the excess gets 503 overloaded at once. Default 128. 0:
	// no queue.
	QueueSize *int `yaml:"queue_size"`
	// QueueTimeout is how long a request may wait in the queue. Default
	// 100ms.
	QueueTimeout time.Duration `yaml:"queue_timeout"`
	// RetryAfter is the Retry-After of an overloaded answer, whole
	// seconds, at least 1. Default 1s.
	RetryAfter time.Duration `yaml:"retry_after"`
	// FallbackLimit is the bound used when some candidate reports no
	// limit (no fresh /health, or no admission control). Default 0: no
	// edge bound then.
	FallbackLimit int `yaml:"fallback_limit"`
	// UnknownInstanceLimit is the limit assumed for a candidate that
	// reports none, instead of falling back to FallbackLimit. Default 0.
	UnknownInstanceLimit int `yaml:"unknown_instance_limit"`
}

// RetryBudgetSection configures the retry budget (Finagle, Linkerd). See
// RetryBudgetConfig.
type RetryBudgetSection struct {
	// Ratio of retries to requests over Window. Default 0.2.
	Ratio *float64 `yaml:"ratio"`
	// MinRetriesPerSecond lets a quiet balancer retry. Default 10.
	MinRetriesPerSecond *float64 `yaml:"min_retries_per_second"`
	// Window is how long a request counts. Default 10s.
	Window time.Duration `yaml:"window"`
}

// ServerSection configures the proxy's HTTP server.
type ServerSection struct {
	// ReadHeaderTimeout bounds reading a request's headers (slowloris).
	// Default 5s.
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	// ReadTimeout bounds reading a whole request, body included. Default
	// 30s. At least every route's total timeout. (It ends once the
	// request body is read, so it never cuts a stream.)
	ReadTimeout time.Duration `yaml:"read_timeout"`
	// WriteTimeout bounds writing a response (a client that stops
	// reading). Default 30s. At least every route's total timeout. A
	// stream's writes are bounded by its idle timeout instead.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// IdleTimeout closes a client's keep-alive connection idle this long.
	// Default 60s.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// MaxHeaderBytes bounds a request's header block; larger gets 431.
	// Default 32768. At least 1024.
	MaxHeaderBytes int `yaml:"max_header_bytes"`
	// DrainDelay is how long the proxy keeps serving once a stop begins
	// (SIGTERM or SIGINT) before it closes its listener: the admin API's
	// /readyz answers 503 at once, so whatever sends traffic here (a
	// network load balancer, DNS, a service mesh) has this long to notice
	// and stop; new connections are still accepted and every answer
	// carries "Connection: close" so keep-alive clients reconnect
	// elsewhere. A second signal ends the delay early. Default 5s. 0
	// disables: the listener closes at once.
	DrainDelay *time.Duration `yaml:"drain_delay"`
	// ShutdownTimeout is how long in-flight requests (streams and
	// upgraded connections included) may take to finish once the
	// listener is closed; what is left then is cut off. Default 20s.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// ProxyProtocol reads a PROXY protocol header (v1 or v2, as HAProxy,
	// AWS NLB and most L4 balancers send it) at the start of each
	// connection and takes the client's address from it: "off" (the
	// default), "optional" (used when a trusted peer sends one; a
	// connection without one is plain HTTP) or "required" (a connection
	// without one is closed, as HAProxy's accept-proxy). A header from a
	// peer outside trusted_proxies closes the connection; with
	// trusted_proxies empty every peer may send one. Needs a restart.
	ProxyProtocol string `yaml:"proxy_protocol"`

	// MaxRequestBody bounds a request body, in bytes; a larger one gets
	// 413 request_too_large (nginx client_max_body_size). Bodies up to it
	// are read in full, within BodyTimeout, before the request takes an
	// admission slot or reaches an instance (nginx
	// proxy_request_buffering), so slow or broken uploads hold nothing
	// scarce and never count against an instance. Default 1048576 (1 MiB).
	// 0 disables both: bodies stream to the instance as they arrive, of
	// any size.
	MaxRequestBody *int64 `yaml:"max_request_body"`
	// BodyTimeout bounds receiving a request's body once its headers are
	// in; past it the client gets 408 request_timeout and its connection
	// is closed (nginx client_body_timeout). Default 10s; at most
	// read_timeout.
	BodyTimeout time.Duration `yaml:"body_timeout"`
	// MaxBufferedBytes bounds the memory that bodies being read hold at
	// once (a body of unknown length counts as max_request_body); a
	// request that would go over gets 503 overloaded at once. Default
	// 67108864 (64 MiB).
	MaxBufferedBytes int64 `yaml:"max_buffered_bytes"`
	// MaxConnections caps the client connections open at once; one over
	// it is answered 503 overloaded and closed at once, before it costs
	// more than a descriptor (HAProxy maxconn). Default: half the
	// process's open-file limit less 64, so that descriptors remain for
	// the connections to instances and the checks. 0 disables the cap.
	// Needs a restart.
	MaxConnections *int `yaml:"max_connections"`
}

// TransportSection configures the one transport to instances (HTTP/1.1,
// keep-alive, no compression).
type TransportSection struct {
	// MaxIdleConnsPerHost is how many idle keep-alive connections are kept
	// per instance. Default 512: enough to reuse connections at a few
	// hundred concurrent clients.
	MaxIdleConnsPerHost int `yaml:"max_idle_conns_per_host"`
	// IdleConnTimeout closes a connection idle this long. Default 90s.
	IdleConnTimeout time.Duration `yaml:"idle_conn_timeout"`
}

// Defaults of FileConfig.
const (
	DefaultListen        = "127.0.0.1:8080"
	DefaultAdminListen   = "127.0.0.1:8081"
	DefaultAdminTokenEnv = "SPILLWAY_ADMIN_TOKEN"
	// DefaultStreamIdle is timeouts.stream_idle's default: nginx's
	// proxy_read_timeout and ALB's idle timeout.
	DefaultStreamIdle = 60 * time.Second
	// DefaultMaxRequestBody is server.max_request_body's default.
	DefaultMaxRequestBody = 1 << 20
	// DefaultDrainDelay is server.drain_delay's default.
	DefaultDrainDelay = 5 * time.Second
	// MaxInstances bounds the instances the balancer tracks.
	MaxInstances = 1024
	// MaxRoutes bounds the routes of a configuration.
	MaxRoutes = 256
	// minAdminTokenLen is the shortest admin token accepted.
	minAdminTokenLen = 16
)

func ptr[T any](v T) *T { return &v }

// SetDefaults fills every field left unset with its documented default.
// It is idempotent.
func (c *FileConfig) SetDefaults() {
	setStr := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	setDur := func(p *time.Duration, v time.Duration) {
		if *p == 0 {
			*p = v
		}
	}
	setInt := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	setFloat := func(p *float64, v float64) {
		if *p == 0 {
			*p = v
		}
	}
	setStr(&c.Listen, DefaultListen)
	setStr(&c.AdminListen, DefaultAdminListen)
	setStr(&c.AdminTokenEnv, DefaultAdminTokenEnv)

	hd, h := DefaultHealthConfig(), &c.HealthCheck
	setDur(&h.Interval, hd.Interval)
	setDur(&h.Timeout, min(hd.Timeout, h.Interval))
	if h.Jitter == nil {
		h.Jitter = ptr(hd.Jitter)
	}
	setInt(&h.HealthyThreshold, hd.HealthyThreshold)
	setInt(&h.UnhealthyThreshold, hd.UnhealthyThreshold)
	setStr(&h.ReadyPath, "/readyz")
	if h.ReportPath == nil {
		h.ReportPath = ptr("/health")
	}
	if h.ReportMaxAge == 0 && h.Interval <= math.MaxInt64/5 {
		h.ReportMaxAge = 5 * h.Interval
	}

	od, o := DefaultOutlierConfig(), &c.Outlier
	if o.ConsecutiveGatewayFailures == nil {
		o.ConsecutiveGatewayFailures = ptr(od.ConsecutiveGatewayFailures)
	}
	setDur(&o.BaseEjectionTime, od.BaseEjectionTime)
	setDur(&o.MaxEjectionTime, max(od.MaxEjectionTime, o.BaseEjectionTime))
	if o.MaxEjectedShare == nil {
		o.MaxEjectedShare = ptr(od.MaxEjectedShare)
	}

	sd, s := DefaultSlowStartConfig(), &c.SlowStart
	if s.Window == nil {
		s.Window = ptr(sd.Window)
	}
	setFloat(&s.Aggression, sd.Aggression)
	setFloat(&s.MinWeight, sd.MinWeight)

	if c.Panic.Threshold == nil {
		c.Panic.Threshold = ptr(DefaultPanicConfig().Threshold)
	}

	shd, sh := DefaultShedConfig(), &c.Shedding
	if sh.Quorum == nil {
		sh.Quorum = ptr(shd.Quorum)
	}
	if sh.RecoveryWindow == nil {
		sh.RecoveryWindow = ptr(shd.RecoveryWindow)
	}
	if sh.MaxRecoveryWindow == 0 && *sh.RecoveryWindow <= math.MaxInt64/8 {
		sh.MaxRecoveryWindow = 8 * *sh.RecoveryWindow
	}
	setDur(&sh.RetryAfter, time.Second)

	t := &c.Timeouts
	setDur(&t.Connect, time.Second)
	setDur(&t.ResponseHeader, 10*time.Second)
	setDur(&t.Total, max(15*time.Second, t.ResponseHeader))
	setDur(&t.StreamIdle, DefaultStreamIdle)

	a := &c.Admission
	if a.QueueSize == nil {
		a.QueueSize = ptr(128)
	}
	setDur(&a.QueueTimeout, 100*time.Millisecond)
	setDur(&a.RetryAfter, time.Second)

	rd, r := DefaultRetryBudgetConfig(), &c.RetryBudget
	if r.Ratio == nil {
		r.Ratio = ptr(rd.Ratio)
	}
	if r.MinRetriesPerSecond == nil {
		r.MinRetriesPerSecond = ptr(rd.MinRetriesPerSecond)
	}
	setDur(&r.Window, rd.Window)

	sv := &c.Server
	setDur(&sv.ReadHeaderTimeout, 5*time.Second)
	setDur(&sv.ReadTimeout, 30*time.Second)
	setDur(&sv.WriteTimeout, 30*time.Second)
	setDur(&sv.IdleTimeout, 60*time.Second)
	setInt(&sv.MaxHeaderBytes, 32<<10)
	if sv.DrainDelay == nil {
		sv.DrainDelay = ptr(DefaultDrainDelay)
	}
	setDur(&sv.ShutdownTimeout, 20*time.Second)
	setStr(&sv.ProxyProtocol, ProxyProtocolOff)
	if sv.MaxRequestBody == nil {
		sv.MaxRequestBody = ptr(int64(DefaultMaxRequestBody))
	}
	setDur(&sv.BodyTimeout, min(10*time.Second, sv.ReadTimeout))
	if sv.MaxBufferedBytes == 0 {
		sv.MaxBufferedBytes = 64 << 20
	}
	if sv.MaxConnections == nil {
		sv.MaxConnections = ptr(connlimit.DefaultFor())
	}

	tr := &c.Transport
	setInt(&tr.MaxIdleConnsPerHost, 512)
	setDur(&tr.IdleConnTimeout, 90*time.Second)
}

// Validate reports every invalid field, each error naming its path (as in
// `instances[2].health: "x:y": port must be a number from 0 to 65535`),
// quoting the value and stating the rule. Call SetDefaults first.
func (c *FileConfig) Validate() error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	add(config.CheckHostPort("listen", c.Listen))
	add(config.CheckHostPort("admin_listen", c.AdminListen))
	if c.Listen == c.AdminListen && !strings.HasSuffix(c.Listen, ":0") {
		add(fmt.Errorf("admin_listen: %q: must differ from listen", c.AdminListen))
	}
	if strings.ContainsAny(c.AdminTokenEnv, "= \t\n") {
		add(fmt.Errorf("admin_token_env: %q: not an environment variable name", c.AdminTokenEnv))
	}
	if tok := c.AdminToken.Reveal(); tok != "" && len(tok) < minAdminTokenLen {
		add(fmt.Errorf("admin_token: must be at least %d characters (value not shown)", minAdminTokenLen))
	}
	add(validateInstances("instances", c.Instances))
	add(c.validateForwarding())

	h := c.HealthCheck
	if h.Interval > 0 && h.Interval < 10*time.Millisecond {
		add(fieldErr("health_check.interval", h.Interval, "must be at least 10ms"))
	}
	add(prefixErr("health_check", c.healthConfig().Validate()))
	add(checkPath("health_check.ready_path", h.ReadyPath, false))
	if h.ReportPath != nil {
		add(checkPath("health_check.report_path", *h.ReportPath, true))
	}
	add(prefixErr("outlier", c.outlierConfig().Validate()))
	add(prefixErr("slow_start", c.slowStartConfig().Validate()))
	add(prefixErr("panic", c.panicConfig().Validate()))
	add(prefixErr("shedding", c.shedConfig().Validate()))
	add(checkPositive("shedding.retry_after", c.Shedding.RetryAfter))
	if c.Shedding.RetryAfter > time.Hour {
		add(fieldErr("shedding.retry_after", c.Shedding.RetryAfter, "must be at most 1h"))
	}
	add(validateTimeouts("timeouts", c.Timeouts))
	add(c.validateRoutes())
	add(c.validateAdmission())
	add(prefixErr("retry_budget", c.retryBudgetConfig().Validate()))
	add(c.validateServer())
	if c.Transport.MaxIdleConnsPerHost < 1 {
		add(fieldErr("transport.max_idle_conns_per_host", c.Transport.MaxIdleConnsPerHost, "must be at least 1"))
	}
	add(checkPositive("transport.idle_conn_timeout", c.Transport.IdleConnTimeout))
	return errors.Join(errs...)
}

func validateInstances(path string, insts []Instance) error {
	var errs []error
	if len(insts) > MaxInstances {
		errs = append(errs, fieldErr(path, len(insts), fmt.Sprintf("more than %d instances", MaxInstances)))
	}
	seen := make(map[string]int, len(insts))
	for i, in := range insts {
		p := path + "[" + strconv.Itoa(i) + "]"
		if err := checkDialAddr(p+".service", in.Service); err != nil {
			errs = append(errs, err)
		} else if j, dup := seen[in.Service]; dup {
			errs = append(errs, fieldErr(p+".service", in.Service, fmt.Sprintf("duplicate of %s[%d].service", path, j)))
		} else {
			seen[in.Service] = i
		}
		if err := checkDialAddr(p+".health", in.Health); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// checkDialAddr checks an address the balancer dials: host:port with a
// host and a port from 1 to 65535.
func checkDialAddr(path, s string) error {
	if s == "" {
		return fieldErr(path, s, "required")
	}
	if err := config.CheckHostPort(path, s); err != nil {
		return err
	}
	host, port, _ := net.SplitHostPort(s)
	if host == "" {
		return fieldErr(path, s, "needs a host")
	}
	if port == "0" {
		return fieldErr(path, s, "port must be from 1 to 65535")
	}
	return nil
}

func checkPath(path, p string, emptyOK bool) error {
	switch {
	case p == "" && emptyOK:
		return nil
	case !strings.HasPrefix(p, "/"):
		return fieldErr(path, p, `must start with "/"`)
	case strings.ContainsAny(p, " \t\r\n#?"):
		return fieldErr(path, p, "must be a plain path (no spaces, query or fragment)")
	}
	return nil
}

func validateTimeouts(path string, t TimeoutsSection) error {
	var errs []error
	errs = append(errs,
		checkPositive(path+".connect", t.Connect),
		checkPositive(path+".response_header", t.ResponseHeader),
		checkPositive(path+".total", t.Total),
		checkPositive(path+".stream_idle", t.StreamIdle))
	if t.ResponseHeader > t.Total && t.Total > 0 {
		errs = append(errs, fieldErr(path+".response_header", t.ResponseHeader, "must not exceed total ("+t.Total.String()+")"))
	}
	if t.Connect > t.Total && t.Total > 0 {
		errs = append(errs, fieldErr(path+".connect", t.Connect, "must not exceed total ("+t.Total.String()+")"))
	}
	return errors.Join(errs...)
}

func (c *FileConfig) validateRoutes() error {
	var errs []error
	if len(c.Routes) > MaxRoutes {
		errs = append(errs, fieldErr("routes", len(c.Routes), fmt.Sprintf("more than %d routes", MaxRoutes)))
	}
	for i, r := range c.Routes {
		p := "routes[" + strconv.Itoa(i) + "]"
		t := c.routeTimeouts(r)
		errs = append(errs, checkNonNegative(p+".connect_timeout", r.ConnectTimeout),
			checkNonNegative(p+".response_header_timeout", r.ResponseHeaderTimeout),
			checkNonNegative(p+".total_timeout", r.TotalTimeout),
			checkNonNegative(p+".stream_idle_timeout", r.StreamIdleTimeout))
		if r.ConnectTimeout >= 0 && r.ResponseHeaderTimeout >= 0 && r.TotalTimeout >= 0 {
			if t.ResponseHeader > t.Total {
				errs = append(errs, fieldErr(p+".response_header_timeout", t.ResponseHeader, "must not exceed the route's total timeout ("+t.Total.String()+")"))
			}
			if t.Connect > t.Total {
				errs = append(errs, fieldErr(p+".connect_timeout", t.Connect, "must not exceed the route's total timeout ("+t.Total.String()+")"))
			}
		}
	}
	// Prefixes and dependency names: the route table's own rules.
	if _, err := NewRouteTable(c.shedRoutes()); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (c *FileConfig) validateAdmission() error {
	a := c.Admission
	var errs []error
	if a.QueueSize != nil && (*a.QueueSize < 0 || *a.QueueSize > 1<<20) {
		errs = append(errs, fieldErr("admission.queue_size", *a.QueueSize, "must be from 0 to 1048576"))
	}
	errs = append(errs, checkPositive("admission.queue_timeout", a.QueueTimeout), checkPositive("admission.retry_after", a.RetryAfter))
	if a.FallbackLimit < 0 || a.FallbackLimit > maxEdgeLimit {
		errs = append(errs, fieldErr("admission.fallback_limit", a.FallbackLimit, fmt.Sprintf("must be from 0 (no bound) to %d", maxEdgeLimit)))
	}
	if err := prefixErr("admission", c.capacityConfig().Validate()); err != nil {
		errs = append(errs, errors.New(strings.Replace(err.Error(), "unknown_limit", "unknown_instance_limit", 1)))
	}
	return errors.Join(errs...)
}

func (c *FileConfig) validateServer() error {
	s := c.Server
	var errs []error
	errs = append(errs,
		checkPositive("server.read_header_timeout", s.ReadHeaderTimeout),
		checkPositive("server.read_timeout", s.ReadTimeout),
		checkPositive("server.write_timeout", s.WriteTimeout),
		checkPositive("server.idle_timeout", s.IdleTimeout),
		checkNonNegative("server.shutdown_timeout", s.ShutdownTimeout))
	if s.DrainDelay != nil {
		errs = append(errs, checkNonNegative("server.drain_delay", *s.DrainDelay))
	}
	if s.MaxHeaderBytes < 1024 || s.MaxHeaderBytes > 1<<20 {
		errs = append(errs, fieldErr("server.max_header_bytes", s.MaxHeaderBytes, "must be from 1024 to 1048576"))
	}
	if s.MaxRequestBody != nil && (*s.MaxRequestBody < 0 || *s.MaxRequestBody > 1<<30) {
		errs = append(errs, fieldErr("server.max_request_body", *s.MaxRequestBody, "must be from 0 (stream bodies) to 1073741824"))
	}
	errs = append(errs, checkPositive("server.body_timeout", s.BodyTimeout))
	if s.ReadTimeout > 0 && s.BodyTimeout > s.ReadTimeout {
		errs = append(errs, fieldErr("server.body_timeout", s.BodyTimeout, "must not exceed read_timeout ("+s.ReadTimeout.String()+")"))
	}
	if s.MaxRequestBody != nil && s.MaxBufferedBytes < *s.MaxRequestBody {
		errs = append(errs, fieldErr("server.max_buffered_bytes", s.MaxBufferedBytes, "must be at least max_request_body"))
	}
	if s.MaxConnections != nil && *s.MaxConnections < 0 {
		errs = append(errs, fieldErr("server.max_connections", *s.MaxConnections, "must not be negative (0 disables the cap)"))
	}
	total := c.maxTotalTimeout()
	if s.ReadTimeout > 0 && s.ReadTimeout < total {
		errs = append(errs, fieldErr("server.read_timeout", s.ReadTimeout, "must be at least the longest total timeout ("+total.String()+")"))
	}
	if s.WriteTimeout > 0 && s.WriteTimeout < total {
		errs = append(errs, fieldErr("server.write_timeout", s.WriteTimeout, "must be at least the longest total timeout ("+total.String()+")"))
	}
	return errors.Join(errs...)
}

// routeTimeouts returns r's timeouts with `timeouts` filling the zeros;
// an inherited connect or response header timeout is capped at the
// route's total timeout.
func (c *FileConfig) routeTimeouts(r RouteSection) TimeoutsSection {
	t := c.Timeouts
	if r.TotalTimeout > 0 {
		t.Total = r.TotalTimeout
	}
	if r.ConnectTimeout > 0 {
		t.Connect = r.ConnectTimeout
	} else {
		t.Connect = min(t.Connect, t.Total)
	}
	if r.ResponseHeaderTimeout > 0 {
		t.ResponseHeader = r.ResponseHeaderTimeout
	} else {
		t.ResponseHeader = min(t.ResponseHeader, t.Total)
	}
	if r.StreamIdleTimeout > 0 {
		t.StreamIdle = r.StreamIdleTimeout
	}
	return t
}

func (c *FileConfig) maxTotalTimeout() time.Duration {
	d := c.Timeouts.Total
	for _, r := range c.Routes {
		d = max(d, c.routeTimeouts(r).Total)
	}
	return d
}

func (c *FileConfig) shedRoutes() []Route {
	out := make([]Route, len(c.Routes))
	for i, r := range c.Routes {
		out[i] = Route{Prefix: r.Prefix, Dependencies: r.Dependencies, All: r.Dependencies == nil}
	}
	return out
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func (c *FileConfig) healthConfig() HealthConfig {
	h := c.HealthCheck
	return HealthConfig{
		Interval: h.Interval, Timeout: h.Timeout, Jitter: deref(h.Jitter),
		HealthyThreshold: h.HealthyThreshold, UnhealthyThreshold: h.UnhealthyThreshold,
		ReportMaxAge: h.ReportMaxAge,
	}
}

func (c *FileConfig) outlierConfig() OutlierConfig {
	o := c.Outlier
	return OutlierConfig{
		ConsecutiveGatewayFailures: deref(o.ConsecutiveGatewayFailures),
		BaseEjectionTime:           o.BaseEjectionTime,
		MaxEjectionTime:            o.MaxEjectionTime,
		MaxEjectedShare:            deref(o.MaxEjectedShare),
	}
}

func (c *FileConfig) slowStartConfig() SlowStartConfig {
	s := c.SlowStart
	return SlowStartConfig{Window: deref(s.Window), Aggression: s.Aggression, MinWeight: s.MinWeight}
}

func (c *FileConfig) panicConfig() PanicConfig {
	return PanicConfig{Threshold: deref(c.Panic.Threshold)}
}

func (c *FileConfig) shedConfig() ShedConfig {
	s := c.Shedding
	return ShedConfig{Quorum: deref(s.Quorum), RecoveryWindow: deref(s.RecoveryWindow), MaxRecoveryWindow: s.MaxRecoveryWindow}
}

func (c *FileConfig) retryBudgetConfig() RetryBudgetConfig {
	r := c.RetryBudget
	return RetryBudgetConfig{Ratio: deref(r.Ratio), MinRetriesPerSecond: deref(r.MinRetriesPerSecond), Window: r.Window}
}

func (c *FileConfig) capacityConfig() CapacityConfig {
	return CapacityConfig{UnknownLimit: c.Admission.UnknownInstanceLimit}
}

// Policy returns the policies' configuration. Valid once Validate passes.
func (c *FileConfig) Policy() Config {
	return Config{
		Health:      c.healthConfig(),
		Outlier:     c.outlierConfig(),
		SlowStart:   c.slowStartConfig(),
		Panic:       c.panicConfig(),
		Shed:        c.shedConfig(),
		RetryBudget: c.retryBudgetConfig(),
		Capacity:    c.capacityConfig(),
	}
}

// Secret is a string that never shows itself: fmt, slog, JSON and YAML
// all render it as "REDACTED". Reveal returns the value.
type Secret string

const redacted = "REDACTED"

// Reveal returns the secret's value.
func (s Secret) Reveal() string { return string(s) }

// String implements fmt.Stringer.
func (s Secret) String() string { return redacted }

// GoString implements fmt.GoStringer (%#v).
func (s Secret) GoString() string { return `"` + redacted + `"` }

// LogValue implements slog.LogValuer.
func (s Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalText implements encoding.TextMarshaler (JSON, text).
func (s Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// MarshalYAML implements yaml.Marshaler.
func (s Secret) MarshalYAML() (any, error) { return redacted, nil }
