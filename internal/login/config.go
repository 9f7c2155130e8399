package login

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spillway-dev/spillway/admission"
	"github.com/spillway-dev/spillway/guard"
	"github.com/spillway-dev/spillway/internal/clientip"
	"github.com/spillway-dev/spillway/internal/config"
)

// Config is the file-facing configuration of one login instance (the
// `login:` part of a spillway file, or the whole of a file given to
// `spillway login --config`). Zero values take the documented defaults.
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
	// connlimit). Default 0: half the process's open-file limit less 64.
	// Negative disables the cap.
	MaxConnections int `yaml:"max_connections"`

	// ShutdownTimeout bounds how long in-flight requests may take to finish
	// after the service listener closes. Default 10s.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
}

// BackendConfig names the validation API. The guard's settings sit inline:
// `backend.timeout`, `backend.open_interval`, and so on.
type BackendConfig struct {
	// URL is the backend's base URL; logins POST to URL + "/v1/validate".
	// Default "http://127.0.0.1:9000".
	URL string `yaml:"url"`
	// Guard wraps every call: deadline, breaker, bulkhead, recovery probe.
	// Its probe_url defaults to URL + "/healthz".
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
	// Default 2s.
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
	// Default 5. A negative value disables the limit.
	PerSecond float64 `yaml:"per_second"`
	// Burst is each client's bucket size. Default 10.
	Burst int `yaml:"burst"`
	// MaxClients bounds the number of clients tracked; the least recently
	// seen is forgotten first. Default 10000. Clients are told apart by
	// address, as trusted_proxies decides it.
	MaxClients int `yaml:"max_clients"`
}

// SetDefaults fills zero fields with their documented defaults.
func (c *Config) SetDefaults() {
	if c.Listen == "" {
		c.Listen = "127.0.0.1:8001"
	}
	if c.HealthListen == "" {
		c.HealthListen = "127.0.0.1:9001"
	}
	if c.Backend.URL == "" {
		c.Backend.URL = "http://127.0.0.1:9000"
	}
	if c.Backend.ProbeURL == "" {
		c.Backend.ProbeURL = strings.TrimSuffix(c.Backend.URL, "/") + "/healthz"
	}
	c.Backend.Config.SetDefaults()
	c.Admission.SetDefaults()
	if c.Health.DrainDelay == 0 {
		c.Health.DrainDelay = 2 * time.Second
	}
	if c.Token.KeyEnv == "" {
		c.Token.KeyEnv = "SPILLWAY_SIGNING_KEY"
	}
	if c.Token.TTL == 0 {
		c.Token.TTL = time.Hour
	}
	if c.Token.Issuer == "" {
		c.Token.Issuer = "spillway"
	}
	if c.RateLimit.PerSecond == 0 {
		c.RateLimit.PerSecond = 5
	}
	if c.RateLimit.Burst == 0 {
		c.RateLimit.Burst = 10
	}
	if c.RateLimit.MaxClients == 0 {
		c.RateLimit.MaxClients = 10000
	}
	if c.TrustedProxies == nil {
		c.TrustedProxies = slices.Clone(clientip.Private)
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 10 * time.Second
	}
}

// Validate reports every problem in c, each naming its field.
func (c *Config) Validate() error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	add(config.CheckHostPort("listen", c.Listen))
	if !c.Health.SharedPort {
		add(config.CheckHostPort("health_listen", c.HealthListen))
		if c.Listen == c.HealthListen && !strings.HasSuffix(c.Listen, ":0") {
			add(fmt.Errorf("health_listen: %q: must differ from listen (or set health.shared_port)", c.HealthListen))
		}
	}
	add(config.CheckHTTPURL("backend.url", c.Backend.URL))
	if err := c.Backend.Config.Validate(); err != nil {
		add(fmt.Errorf("backend.%w", err))
	}
	if err := c.Admission.Validate(); err != nil {
		add(fmt.Errorf("admission.%w", err))
	}
	if c.Health.Warmup < 0 {
		add(fmt.Errorf("health.warmup: %v: must not be negative", c.Health.Warmup))
	}
	if c.Health.DrainDelay < 0 {
		add(fmt.Errorf("health.drain_delay: %v: must not be negative", c.Health.DrainDelay))
	}
	if c.Token.TTL < time.Second {
		add(fmt.Errorf("token.ttl: %v: must be at least 1s", c.Token.TTL))
	}
	add(config.CheckFinite("rate_limit.per_second", c.RateLimit.PerSecond))
	if c.RateLimit.Burst < 1 {
		add(fmt.Errorf("rate_limit.burst: %d: must be at least 1", c.RateLimit.Burst))
	}
	if c.RateLimit.MaxClients < 1 {
		add(fmt.Errorf("rate_limit.max_clients: %d: must be at least 1", c.RateLimit.MaxClients))
	}
	if _, err := clientip.Parse(c.TrustedProxies); err != nil {
		add(fmt.Errorf("trusted_proxies%w", err))
	}
	if c.ShutdownTimeout < 0 {
		add(fmt.Errorf("shutdown_timeout: %v: must not be negative", c.ShutdownTimeout))
	}
	return errors.Join(errs...)
}
