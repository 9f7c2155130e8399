package login

import (
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/spillway-dev/spillway/admission"
	"github.com/spillway-dev/spillway/guard"
	"github.com/spillway-dev/spillway/internal/certs"
	"github.com/spillway-dev/spillway/internal/clientip"
	"github.com/spillway-dev/spillway/internal/connlimit"
	"github.com/spillway-dev/spillway/internal/field"
	"github.com/spillway-dev/spillway/internal/membership"
)

// Config is the configuration of one login instance (the `login:` section
// of a spillway file). Start from DefaultConfig (a file is decoded onto it:
// absent fields keep their defaults, an explicit 0 is 0, which disables
// the features that say so); New resolves the defaults that derive from
// other fields (Resolve) and validates.
type Config struct {
	// Listen is the service port's address. Default "127.0.0.1:8001".
	Listen string `yaml:"listen"`
	// HealthListen is the health port's address: /livez, /readyz, /health
	// and /metrics on their own server. Default "127.0.0.1:9001". Ignored
	// when Health.SharedPort is true.
	HealthListen string `yaml:"health_listen"`

	// Backend is the validation API and the guard around every call to it.
	Backend BackendConfig `yaml:"backend"`
	// Admission bounds concurrent logins on the service port.
	Admission admission.Config `yaml:"admission"`
	// Health configures readiness and the 2018 incident settings.
	Health HealthConfig `yaml:"health"`
	// Token configures the signed session tokens.
	Token TokenConfig `yaml:"token"`
	// RateLimit bounds login attempts per client address.
	RateLimit RateLimitConfig `yaml:"rate_limit"`
	// TrustedProxies are the peers (IP addresses or CIDR prefixes) whose
	// X-Forwarded-For is believed: the client of a request from one of
	// them is the rightmost forwarded address that is not itself a trusted
	// proxy (package clientip); from any other peer the header is ignored.
	// The client address is what the rate limit counts and the logs name.
	// Default: loopback and the private ranges (clientip.Private), so an
	// instance behind a load balancer on the same host or private network
	// sees its real clients. [] trusts nobody: set it so when the service
	// port is reachable from clients without a proxy in front, since any
	// peer in a trusted range can claim any address.
	TrustedProxies []string `yaml:"trusted_proxies"`

	// MaxConnections caps the service port's open client connections; one
	// over it is answered 503 overloaded at once and closed (see package
	// connlimit). Default half the process's open-file limit less 64. 0
	// disables the cap.
	MaxConnections int `yaml:"max_connections"`

	// TLS serves the service port (HTTP/2 offered by ALPN beside
	// HTTP/1.1) and the health port (HTTP/1.1) over TLS with these
	// certificates, as lb.server.tls: cert_file and key_file (the
	// --tls-cert and --tls-key flags), certificates chosen by SNI,
	// client_ca_file to require client certificates. The files are
	// reloaded on SIGHUP and when they change; a reload that fails keeps
	// the certificates in use. A balancer in front then needs
	// lb.transport.tls. Default: none, plain HTTP. Needs a restart.
	TLS certs.Config `yaml:"tls"`

	// ShutdownTimeout bounds how long in-flight requests may take to finish
	// after the service listener closes. Default 10s.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`

	// Register is where the instance registers itself once it serves, for
	// load balancers that discover instances there (lb.discovery):
	// etcd://HOST:PORT[,HOST:PORT...]/PREFIX (package registry). The key
	// PREFIX/instances/HOSTNAME-PID holds the service and health
	// addresses the listeners bound (an unspecified IP, 0.0.0.0 or ::, is
	// replaced by the hostname), under a lease of RegisterTTL kept alive
	// while the instance runs and revoked when it starts draining. An
	// instance that cannot register at start exits with the error; one
	// that loses etcd later serves on and registers again when etcd
	// answers. Default "": no registration.
	Register string `yaml:"register"`
	// RegisterTTL is the registration's lease TTL: how long the key of an
	// instance that died without draining (kill -9, a lost host) stays.
	// Whole seconds (rounded up), at least 1s. Default 5s. Ignored
	// without Register.
	RegisterTTL time.Duration `yaml:"register_ttl"`
}

// BackendConfig names the validation API. The guard's settings sit inline:
// `backend.timeout`, `backend.open_interval`, and so on.
type BackendConfig struct {
	// URL is the backend's base URL; logins POST to URL + "/v1/validate".
	// Default "http://127.0.0.1:9000".
	URL string `yaml:"url"`
	// Guard wraps every call: deadline, breaker, bulkhead, recovery probe.
	// Its probe_url defaults to URL + "/healthz" (empty derives it so).
	guard.Config `yaml:",inline"`
}

// HealthConfig configures the health port's answers.
type HealthConfig struct {
	// Warmup is how long /readyz answers 503 after start, for services that
	// fill caches or connection pools first. Default 0 (ready at once): a
	// login instance has nothing to warm, and the load balancer's slow start
	// ramps a new instance's share anyway.
	Warmup time.Duration `yaml:"warmup"`
	// DrainDelay is how long /readyz answers 503 before the service
	// listener closes on shutdown, so load balancers stop sending first.
	// Default 2s. 0 disables.
	DrainDelay time.Duration `yaml:"drain_delay"`
	// SharedPort serves the health endpoints on the service port, behind
	// the same admission limit as logins. The 2018 incident's design: a
	// saturated service then fails its own health checks. Default false.
	SharedPort bool `yaml:"shared_port"`
	// Deep makes /livez and /readyz call the backend and fail when it
	// fails. The 2018 incident's design: a backend outage then looks like
	// an instance failure. Default false.
	Deep bool `yaml:"deep"`
}

// TokenConfig configures session tokens (EdDSA-signed JWTs).
type TokenConfig struct {
	// KeyFile is a PEM file holding the Ed25519 private signing key
	// (PKCS #8). Either KeyFile or the environment variable named by KeyEnv
	// must supply a key unless the instance runs with --dev.
	KeyFile string `yaml:"key_file"`
	// KeyEnv names an environment variable holding the PEM private key.
	// Default "SPILLWAY_SIGNING_KEY". Used when KeyFile is empty.
	KeyEnv string `yaml:"key_env"`
	// VerifyKeyFiles are PEM files of earlier keys (public or private)
	// whose tokens are still accepted, for rotation. Default none.
	VerifyKeyFiles []string `yaml:"verify_key_files"`
	// TTL is a token's lifetime. Default 1h.
	TTL time.Duration `yaml:"ttl"`
	// Issuer is the "iss" claim. Default "spillway".
	Issuer string `yaml:"issuer"`
}

// RateLimitConfig bounds login attempts per client with a token bucket.
type RateLimitConfig struct {
	// PerSecond is each client's sustained login attempts per second.
	// Default 5. 0 disables the limit.
	PerSecond float64 `yaml:"per_second"`
	// Burst is each client's bucket size. Default 10.
	Burst int `yaml:"burst"`
	// MaxClients bounds the number of clients tracked; the least recently
	// seen is forgotten first. Default 10000. Clients are told apart by
	// address, as trusted_proxies decides it.
	MaxClients int `yaml:"max_clients"`
}

// retryAfter is the Retry-After of a dependency_unavailable answer: how
// soon the guard's recovery probes can close the breaker once the backend
// is back (probe_interval × probe_successes), at least a second; without
// probes, when the breaker next lets a trial call through (open_interval).
func (c *BackendConfig) retryAfter() time.Duration {
	if c.ProbeURL == "" {
		return c.OpenInterval
	}
	return max(time.Second, c.ProbeInterval*time.Duration(c.ProbeSuccesses))
}

// DefaultConfig returns the documented defaults. backend.probe_url and
// the guard's probe_timeout derive from other fields: they are empty here
// and filled by Resolve.
func DefaultConfig() Config {
	return Config{
		Listen:          "127.0.0.1:8001",
		HealthListen:    "127.0.0.1:9001",
		Backend:         BackendConfig{URL: "http://127.0.0.1:9000", Config: guard.DefaultConfig()},
		Admission:       admission.DefaultConfig(),
		Health:          HealthConfig{DrainDelay: 2 * time.Second},
		Token:           TokenConfig{KeyEnv: "SPILLWAY_SIGNING_KEY", TTL: time.Hour, Issuer: "spillway"},
		RateLimit:       RateLimitConfig{PerSecond: 5, Burst: 10, MaxClients: 10000},
		TrustedProxies:  slices.Clone(clientip.Private),
		MaxConnections:  connlimit.DefaultFor(),
		ShutdownTimeout: 10 * time.Second,
		RegisterTTL:     membership.DefaultTTL,
	}
}

// Resolve fills the fields whose default derives from another, when they
// are empty: backend.probe_url (backend.url + "/healthz") and the guard's
// own derived defaults. It is idempotent; New calls it.
func (c *Config) Resolve() {
	if c.Backend.ProbeURL == "" {
		c.Backend.ProbeURL = strings.TrimSuffix(c.Backend.URL, "/") + "/healthz"
	}
	c.Backend.Config.SetDefaults()
}

// Validate reports every problem in c, each naming its field.
func (c *Config) Validate() error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	add(field.HostPort("listen", c.Listen))
	if !c.Health.SharedPort {
		add(field.SecondListener("health_listen", c.HealthListen, "listen", c.Listen, "or set health.shared_port"))
	}
	add(field.HTTPURL("backend.url", c.Backend.URL))
	add(field.Prefix("tls", c.TLS.Validate()))
	add(field.Prefix("backend", c.Backend.Config.Validate()))
	add(field.Prefix("admission", c.Admission.Validate()))
	add(field.NonNegative("health.warmup", c.Health.Warmup))
	add(field.NonNegative("health.drain_delay", c.Health.DrainDelay))
	if c.Token.TTL < time.Second {
		add(field.New("token.ttl", c.Token.TTL, "must be at least 1s"))
	}
	add(field.Finite("rate_limit.per_second", c.RateLimit.PerSecond))
	if c.RateLimit.PerSecond < 0 {
		add(field.New("rate_limit.per_second", c.RateLimit.PerSecond, "must not be negative (0 disables the limit)"))
	}
	if c.RateLimit.Burst < 1 {
		add(field.New("rate_limit.burst", c.RateLimit.Burst, "must be at least 1"))
	}
	if c.RateLimit.MaxClients < 1 {
		add(field.New("rate_limit.max_clients", c.RateLimit.MaxClients, "must be at least 1"))
	}
	if _, err := clientip.Parse(c.TrustedProxies); err != nil {
		add(field.Prefix("trusted_proxies", err))
	}
	if c.MaxConnections < 0 {
		add(field.New("max_connections", c.MaxConnections, "must not be negative (0 disables the cap)"))
	}
	add(field.NonNegative("shutdown_timeout", c.ShutdownTimeout))
	if c.Register != "" {
		if _, err := membership.ParseURL(c.Register); err != nil {
			rule := err.Error()
			if ue := (*membership.URLError)(nil); errors.As(err, &ue) {
				rule = ue.Rule
			}
			add(field.New("register", c.Register, rule))
		}
	}
	if c.RegisterTTL < time.Second {
		add(field.New("register_ttl", c.RegisterTTL, "must be at least 1s"))
	}
	return errors.Join(errs...)
}
