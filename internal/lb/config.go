package lb

import (
	"log/slog"
	"math"
	"time"

	"github.com/spillway-dev/spillway/internal/certs"
	"github.com/spillway-dev/spillway/internal/connlimit"
)

// Config is the `lb:` section of a spillway file: everything `spillway lb`
// (and the balancer of `spillway up`) runs with. The policy configs are its
// sections, so the file, the runtime and the pure policies share one type.
//
// Load it by decoding onto DefaultConfig (absent fields keep their
// defaults, an explicit 0 is 0, which disables the features that say so),
// then New resolves the few defaults that derive from other fields
// (Resolve) and validates (Validate). Field comments give unit, default
// and interactions; docs/CONFIG.md lists them all.
type Config struct {
	// Listen is the proxy's address. Default "127.0.0.1:8080".
	Listen string `yaml:"listen"`
	// AdminListen is the admin API's address (/livez, /readyz, /status,
	// /metrics, drain, shedding overrides). Default "127.0.0.1:8081". On a
	// non-loopback address reads need the admin token too.
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
	// AdminTLS serves the admin API over TLS, with the certificates it
	// names (cert_file, key_file, certificates: as server.tls), and with
	// client_ca_file requires a client certificate signed by that CA
	// (mutual TLS). Default: none, plain HTTP. Needs a restart; the
	// certificate files themselves are reloaded as server.tls's.
	AdminTLS certs.Config `yaml:"admin_tls"`

	// Instances is the static instance list (a fleet or a discovery may
	// replace it at run time). Reloaded on SIGHUP.
	Instances []Instance `yaml:"instances"`
	// Discovery names where `spillway lb` finds its instances instead of
	// Instances, as a URL whose scheme is the source:
	// etcd://HOST:PORT[,HOST:PORT...]/PREFIX follows the instances
	// registered under PREFIX (login.register); while etcd is
	// unreachable the last set is kept. Set it or Instances, not both.
	// Changing it needs a restart. Default "": the static list.
	Discovery string `yaml:"discovery"`
	// Weight is this balancer's part of the fleet's capacity relative to
	// the other balancers in front of the same instances: with etcd
	// discovery each balancer registers under PREFIX/lbs/ and bounds its
	// edge at the fleet's reported capacity × its weight / the sum of the
	// live balancers' weights (docs/LB.md, "Several balancers"). A
	// finite number above 0. Default 1. Without etcd discovery it has no
	// effect. Changing it needs a restart.
	Weight float64 `yaml:"weight"`

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
	HealthCheck HealthConfig `yaml:"health_check"`
	// Outlier configures passive outlier ejection.
	Outlier OutlierConfig `yaml:"outlier"`
	// SlowStart configures the weight ramp of a newly routable instance.
	SlowStart SlowStartConfig `yaml:"slow_start"`
	// Panic configures the panic threshold.
	Panic PanicConfig `yaml:"panic"`
	// Shedding configures dependency-aware edge shedding.
	Shedding ShedConfig `yaml:"shedding"`
	// Timeouts apply to paths that match no route, and to route fields
	// left at 0.
	Timeouts TimeoutsConfig `yaml:"timeouts"`
	// Routes map path prefixes to the dependencies they need and their
	// timeouts. The longest matching prefix wins.
	Routes []RouteConfig `yaml:"routes"`
	// Admission configures the edge bound on proxied requests in flight.
	Admission AdmissionConfig `yaml:"admission"`
	// RetryBudget bounds retries to a share of requests.
	RetryBudget RetryBudgetConfig `yaml:"retry_budget"`
	// Server configures the proxy's own HTTP server (client side).
	Server ServerConfig `yaml:"server"`
	// Transport configures the connections to instances.
	Transport TransportConfig `yaml:"transport"`
	// AccessLog configures the access log: a JSON line per request.
	// Off by default.
	AccessLog AccessLogConfig `yaml:"access_log"`
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

// TimeoutsConfig holds the timeouts of one route.
type TimeoutsConfig struct {
	// Connect bounds the TCP connect to an instance. Default 1s.
	Connect time.Duration `yaml:"connect"`
	// ResponseHeader bounds one attempt, from its start (connect
	// included) to the response's headers. Default 10s. At most Total.
	ResponseHeader time.Duration `yaml:"response_header"`
	// Total bounds the whole proxied request, retry and response body
	// included: past it the request is cut off, with a 504 if nothing was
	// sent yet. Default 15s, or ResponseHeader if that is longer (0
	// derives it so). Streams are bounded by StreamIdle instead.
	Total time.Duration `yaml:"total"`
	// StreamIdle bounds the silence of a stream: an upgraded connection
	// (WebSocket) or a text/event-stream response is cut after this long
	// without a byte in either direction, however long it lives in all
	// (nginx proxy_read_timeout, ALB idle timeout). Default 60s.
	StreamIdle time.Duration `yaml:"stream_idle"`
}

// RouteConfig maps a path prefix to the dependencies its requests need
// and its timeouts.
type RouteConfig struct {
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

// ServerConfig configures the proxy's HTTP server.
type ServerConfig struct {
	// ReadHeaderTimeout bounds reading a request's headers (slowloris).
	// Default 5s.
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	// ReadTimeout bounds reading a whole request, body included. Default
	// 30s. At least every route's total timeout.
	ReadTimeout time.Duration `yaml:"read_timeout"`
	// WriteTimeout bounds writing a response (a client that stops
	// reading). Default 30s. At least every route's total timeout.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// IdleTimeout closes a client's keep-alive connection idle this long.
	// Default 60s.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// MaxHeaderBytes bounds a request's header block; larger gets 431.
	// Default 32768. From 1024 to 1 MiB.
	MaxHeaderBytes int `yaml:"max_header_bytes"`
	// DrainDelay is how long the proxy keeps serving once a stop begins
	// (SIGTERM/SIGINT): /readyz answers 503 at once and every answer
	// carries Connection: close, so whatever routes traffic here moves it
	// elsewhere before the listener closes (Envoy's drain, HAProxy's
	// grace, an AWS deregistration delay). Default 5s. 0 disables.
	DrainDelay time.Duration `yaml:"drain_delay"`
	// ShutdownTimeout is how long requests in flight, streams included,
	// may take to finish once the listener is closed. Default 20s.
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
	MaxRequestBody int64 `yaml:"max_request_body"`
	// BodyTimeout bounds receiving a request's body once its headers are
	// in; past it the client gets 408 request_timeout and its connection
	// is closed (nginx client_body_timeout). Default 10s, or read_timeout
	// if that is shorter (0 derives it so).
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
	MaxConnections int `yaml:"max_connections"`
	// TLS serves the proxy over TLS with these certificates (cert_file
	// and key_file, the one for clients that send no SNI or a name no
	// other covers; certificates, further pairs chosen by SNI; the
	// --tls-cert and --tls-key flags set the first pair), TLS 1.2 at
	// least, HTTP/2 offered by ALPN beside HTTP/1.1. client_ca_file
	// requires client certificates signed by that CA. The files are
	// reloaded on SIGHUP and when they change (renames included); a
	// reload that fails keeps the certificates in use. Default: none,
	// plain HTTP. Adding, removing or renaming files needs a restart. With
	// max_connections, a connection over the cap is closed without an
	// answer (a plain-text 503 would be garbage to a TLS client).
	TLS certs.Config `yaml:"tls"`
	// H2C also serves HTTP/2 without TLS to clients that speak it from
	// the first byte (prior knowledge; the HTTP/1.1 Upgrade: h2c dance is
	// not supported). Not with tls, where HTTP/2 is negotiated by ALPN.
	// Default false. Needs a restart.
	H2C bool `yaml:"h2c"`
}

// TransportConfig configures the one transport to instances (keep-alive,
// no compression), for proxied requests and for health checks and report
// fetches alike.
type TransportConfig struct {
	// MaxIdleConnsPerHost is how many idle keep-alive connections are kept
	// per instance. Default 512: enough to reuse connections at a few
	// hundred concurrent clients.
	MaxIdleConnsPerHost int `yaml:"max_idle_conns_per_host"`
	// IdleConnTimeout closes a connection idle this long. Default 90s.
	IdleConnTimeout time.Duration `yaml:"idle_conn_timeout"`
	// Protocol is what the balancer speaks to instances, on their service
	// and health ports: "http1" (HTTP/1.1, the default), "h2" (HTTP/2
	// over TLS, negotiated by ALPN, HTTP/1.1 with an instance that does
	// not offer it; needs tls.enabled) or "h2c" (HTTP/2 without TLS, by
	// prior knowledge: every instance must speak it; not with tls). With
	// h2c, WebSocket upgrades cannot be proxied. Needs a restart.
	Protocol string `yaml:"protocol"`
	// TLS connects to instances (service and health ports) over TLS.
	// Needs a restart.
	TLS TransportTLSConfig `yaml:"tls"`
}

// Transport protocols (transport.protocol).
const (
	ProtocolHTTP1 = "http1"
	ProtocolH2    = "h2"
	ProtocolH2C   = "h2c"
)

// TransportTLSConfig configures TLS to instances.
type TransportTLSConfig struct {
	// Enabled turns TLS to instances on. Default false.
	Enabled bool `yaml:"enabled"`
	// CAFile is a PEM file of the CAs that sign the instances'
	// certificates. Default "": the system's roots.
	CAFile string `yaml:"ca_file"`
	// ServerName is the name an instance's certificate is checked for
	// (and sent by SNI). Default "": the host of the instance's address,
	// so a certificate for its IP address or host name.
	ServerName string `yaml:"server_name"`
	// InsecureSkipVerify accepts any certificate: encryption without
	// authentication, for tests. Default false.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// Defaults of Config, and limits.
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

// DefaultConfig returns spillway's defaults for every field. The fields
// whose default derives from another (health_check.timeout and
// report_max_age, outlier.max_ejection_time, shedding.max_recovery_window,
// timeouts.total, server.body_timeout) are 0 here and filled by Resolve.
func DefaultConfig() Config {
	h := DefaultHealthConfig()
	h.Timeout, h.ReportMaxAge = 0, 0
	o := DefaultOutlierConfig()
	o.MaxEjectionTime = 0
	sh := DefaultShedConfig()
	sh.MaxRecoveryWindow = 0
	return Config{
		Listen:        DefaultListen,
		AdminListen:   DefaultAdminListen,
		AdminTokenEnv: DefaultAdminTokenEnv,
		Weight:        1,
		HealthCheck:   h,
		Outlier:       o,
		SlowStart:     DefaultSlowStartConfig(),
		Panic:         DefaultPanicConfig(),
		Shedding:      sh,
		Timeouts: TimeoutsConfig{
			Connect:        time.Second,
			ResponseHeader: 10 * time.Second,
			StreamIdle:     DefaultStreamIdle,
		},
		Admission:   DefaultAdmissionConfig(),
		RetryBudget: DefaultRetryBudgetConfig(),
		AccessLog:   DefaultAccessLogConfig(),
		Server: ServerConfig{
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       30 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       60 * time.Second,
			MaxHeaderBytes:    32 << 10,
			DrainDelay:        DefaultDrainDelay,
			ShutdownTimeout:   20 * time.Second,
			ProxyProtocol:     ProxyProtocolOff,
			MaxRequestBody:    DefaultMaxRequestBody,
			MaxBufferedBytes:  64 << 20,
			MaxConnections:    connlimit.DefaultFor(),
		},
		Transport: TransportConfig{MaxIdleConnsPerHost: 512, IdleConnTimeout: 90 * time.Second, Protocol: ProtocolHTTP1},
	}
}

// Resolve fills the fields whose default derives from another field, when
// they are 0: health_check.timeout (1s, or the interval if shorter) and
// report_max_age (5 intervals), outlier.max_ejection_time (300s, or the
// base ejection time if longer), shedding.max_recovery_window (8 recovery
// windows), timeouts.total (15s, or the response header timeout if
// longer), server.body_timeout (10s, or the read timeout if shorter). It
// is idempotent; New calls it.
func (c *Config) Resolve() {
	h := &c.HealthCheck
	if h.Timeout == 0 {
		h.Timeout = min(time.Second, h.Interval)
	}
	if h.ReportMaxAge == 0 && h.Interval <= math.MaxInt64/5 {
		h.ReportMaxAge = 5 * h.Interval
	}
	if c.Outlier.MaxEjectionTime == 0 {
		c.Outlier.MaxEjectionTime = max(300*time.Second, c.Outlier.BaseEjectionTime)
	}
	if sh := &c.Shedding; sh.MaxRecoveryWindow == 0 && sh.RecoveryWindow <= math.MaxInt64/8 {
		sh.MaxRecoveryWindow = 8 * sh.RecoveryWindow
	}
	if c.Timeouts.Total == 0 {
		c.Timeouts.Total = max(15*time.Second, c.Timeouts.ResponseHeader)
	}
	if c.Server.BodyTimeout == 0 {
		c.Server.BodyTimeout = min(10*time.Second, c.Server.ReadTimeout)
	}
}

// routeTimeouts returns r's timeouts with `timeouts` filling the zeros;
// an inherited connect or response header timeout is capped at the
// route's total timeout.
func (c *Config) routeTimeouts(r RouteConfig) TimeoutsConfig {
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

func (c *Config) maxTotalTimeout() time.Duration {
	d := c.Timeouts.Total
	for _, r := range c.Routes {
		d = max(d, c.routeTimeouts(r).Total)
	}
	return d
}

func (c *Config) shedRoutes() []Route {
	out := make([]Route, len(c.Routes))
	for i, r := range c.Routes {
		out[i] = Route{Prefix: r.Prefix, Dependencies: r.Dependencies, All: r.Dependencies == nil}
	}
	return out
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

func clampFraction(v, lo, hi float64) float64 {
	if !(v >= lo) { // NaN too
		return lo
	}
	if v > hi {
		return hi
	}
	return v
}
