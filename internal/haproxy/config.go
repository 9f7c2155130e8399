package haproxy

// This file writes the HAProxy configuration that `spillway controller`
// drives (issue 13): Config holds what it needs, Render writes haproxy.cfg,
// RenderMap the initial share map, WriteFiles both. The configuration's
// shape is a contract with the controller, which changes HAProxy through
// its Runtime API and never reloads it:
//
//   - The runtime socket (Config.Socket) is at level admin.
//   - The frontend FrontendName on Config.Listen sheds at the edge itself,
//     from the share map (Config.MapFile). While every route admits all
//     requests the map is empty: the per-request lookup finds nothing,
//     sets nothing, and costs next to nothing. While a route is shed or
//     ramping the map holds one line per route prefix, longest first, then
//     the catch-all "/" (the paths no route matches, which need every
//     dependency) unless a route is "/" itself; map_beg takes the first
//     line that starts the path. A value is the admitted share of the
//     route's requests in per-mille: 1000 admits all, 0 sheds all, 500
//     admits about half (the recovery ramp), each route at the least
//     admitted share of the dependencies it needs. The controller changes
//     values with "set map FILE PREFIX N" and fills or empties the map as
//     a whole ("prepare map", "add map @VERSION", "commit map"), so that a
//     request sees either the old map or the new one.
//   - The backend BackendName has one server per instance, named by
//     ServerName ("s-127.0.0.1-8001"), at weight FullWeight: the
//     controller ramps a new instance with "set weight" (HAProxy's own
//     slowstart is not used, its clock is not spillway's), and
//     HAProxy's own check of the health port (Config.Health) is a floor
//     under the controller's decisions.
//
// Config is a plain value; Validate, Render, RenderMap and WriteFiles do
// not modify it and are safe for concurrent use.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/spillway-dev/spillway/internal/field"
	"github.com/spillway-dev/spillway/internal/lb"
)

// Names in the configuration the controller addresses at run time.
const (
	// FrontendName is the frontend that takes the clients' requests.
	FrontendName = "spillway"
	// BackendName is the backend whose servers are the instances.
	BackendName = "instances"
	// FullWeight is every server's weight in the configuration: an
	// instance at full weight. The controller's slow start sets a
	// share of it ("set weight instances/s-... 25" is a quarter).
	FullWeight = 100
	// AdmitAll is the share map's value that admits every request, in
	// per-mille; 0 sheds every request.
	AdmitAll = 1000
)

// Reason is the X-Spillway-Reason (and JSON "error") of the frontend's
// deliberate 503, as `spillway lb` answers it (docs/LB.md).
const Reason = "dependency_unavailable"

// Config is what the HAProxy configuration is written from. Build it with
// DefaultConfig and set Listen, Socket, Instances and Routes.
type Config struct {
	// Listen is the frontend's address, host:port.
	Listen string
	// Socket is the Runtime API's address: a unix socket path (with a
	// "/"), or a TCP host:port. It is at level admin: keep it local.
	Socket string
	// MapFile is the share map's absolute path, which HAProxy reads at
	// start (it must exist: WriteFiles writes it) and the controller
	// names in "set map". Default DefaultMapFile.
	MapFile string
	// Instances are the instances, one server each. At least one, unless
	// Dynamic.
	Instances []lb.Instance
	// Dynamic: the controller adds a server for each instance it learns
	// of at run time ("add server", Runtime.AddServer) and removes it when
	// the instance leaves, so Instances may be empty (`spillway up
	// --data-plane haproxy`, whose fleet's instances come and go on
	// ports of their own). The servers of Instances are never removed.
	Dynamic bool
	// Routes are lb's routes: a prefix and the dependencies it needs
	// (nil: all, as a path no route matches; empty: none, never shed).
	// Only the prefixes shape the map; the controller reads the
	// dependencies to compute each prefix's share. Route timeouts are
	// not applied (HAProxy's are the defaults' below).
	Routes []lb.RouteConfig
	// Health is the check of each instance's health port.
	Health HealthCheck
	// Timeouts are HAProxy's.
	Timeouts Timeouts
	// MaxConn is HAProxy's global and frontend maxconn. Default 4096.
	MaxConn int
	// RetryAfter is the shed answer's Retry-After, whole seconds (at
	// least 1). Default 1s, as lb's shedding.retry_after.
	RetryAfter time.Duration
}

// HealthCheck is HAProxy's check of the instances' health ports: GET
// Path on the instance's health address, as lb's health_check.
type HealthCheck struct {
	// Path is the GET path; 2xx passes. Default "/readyz".
	Path string
	// Interval between two checks of a server (inter). Default 2s.
	Interval time.Duration
	// Timeout of one check (timeout check). Default 1s. At most Interval.
	Timeout time.Duration
	// Rise is the passes that bring a down server back. Default 2.
	Rise int
	// Fall is the failures that take a server down. Default 3.
	Fall int
}

// Timeouts are HAProxy's timeouts (the defaults section).
type Timeouts struct {
	// Connect to an instance. Default 1s.
	Connect time.Duration
	// Client inactivity. Default 30s (lb's server.read_timeout).
	Client time.Duration
	// Server inactivity, waiting for an instance's answer. Default 15s
	// (lb's timeouts.total).
	Server time.Duration
	// HTTPRequest bounds receiving a request's headers. Default 5s.
	HTTPRequest time.Duration
	// HTTPKeepAlive closes an idle client connection. Default 60s.
	HTTPKeepAlive time.Duration
	// Queue bounds the wait for a server slot. Default 1s.
	Queue time.Duration
	// Tunnel bounds an upgraded connection's silence. Default 60s.
	Tunnel time.Duration
}

// DefaultMapFile is Config.MapFile's default.
const DefaultMapFile = "/etc/haproxy/spillway-routes.map"

// DefaultConfig returns the defaults of every field but Listen, Socket,
// Instances and Routes. They follow lb.DefaultConfig where lb has the
// same setting.
func DefaultConfig() Config {
	h := lb.DefaultHealthConfig()
	return Config{
		MapFile: DefaultMapFile,
		Health: HealthCheck{
			Path:     h.ReadyPath,
			Interval: h.Interval,
			Timeout:  h.Timeout,
			Rise:     h.HealthyThreshold,
			Fall:     h.UnhealthyThreshold,
		},
		Timeouts: Timeouts{
			Connect:       time.Second,
			Client:        30 * time.Second,
			Server:        15 * time.Second,
			HTTPRequest:   5 * time.Second,
			HTTPKeepAlive: 60 * time.Second,
			Queue:         time.Second,
			Tunnel:        lb.DefaultStreamIdle,
		},
		MaxConn:    4096,
		RetryAfter: time.Second,
	}
}

// ConfigFor is the HAProxy configuration for c, a validated lb
// configuration: the frontend on c.Listen, one server per instance, the
// share map of c.Routes at mapFile, the Runtime API at socket (a path, or
// host:port; a unix:// or tcp:// prefix is dropped), and HAProxy's own
// checks and timeouts following c's.
func ConfigFor(c *lb.Config, socket, mapFile string) Config {
	hc := DefaultConfig()
	hc.Listen = c.Listen
	hc.Socket = strings.TrimPrefix(strings.TrimPrefix(socket, "unix://"), "tcp://")
	hc.MapFile = mapFile
	hc.Instances = c.Instances
	hc.Routes = c.Routes
	hc.Health.Path = c.HealthCheck.ReadyPath
	hc.Health.Interval, hc.Health.Timeout = c.HealthCheck.Interval, min(c.HealthCheck.Timeout, c.HealthCheck.Interval)
	hc.Health.Rise, hc.Health.Fall = c.HealthCheck.HealthyThreshold, c.HealthCheck.UnhealthyThreshold
	hc.Timeouts.Connect = c.Timeouts.Connect
	hc.Timeouts.Server = c.Timeouts.Total
	hc.RetryAfter = max(c.Shedding.RetryAfter, time.Second)
	return hc
}

// ServerName is the name of the server of the instance whose service
// address is service: "s-HOST-PORT" ("s-127.0.0.1-8001", "s-::1-8001"),
// with any character HAProxy does not take in a name (other than letters,
// digits and "-_.:") replaced by "_".
func ServerName(service string) string {
	host, port, err := net.SplitHostPort(service)
	if err != nil {
		host, port = service, ""
	}
	b := []byte("s-" + host + "-" + port)
	for i, c := range b {
		if !nameChar(c) {
			b[i] = '_'
		}
	}
	return string(b)
}

func nameChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-_.:", c) >= 0
}

// RouteLine is one line of the share map: a route prefix and what its
// requests need.
type RouteLine struct {
	// Prefix is the key: requests whose path starts with it, and with no
	// earlier line's, take this line's share.
	Prefix string
	// Dependencies the prefix's requests need (when not All).
	Dependencies []string
	// All means the requests need every dependency.
	All bool
}

// MapEntries returns the share map's lines in the map's order: the routes'
// prefixes longest first, then "/" needing every dependency unless a route
// is "/". The controller sets each line's share to the least admitted
// share of its dependencies (AdmitAll when it has none).
func (c *Config) MapEntries() []RouteLine {
	var out []RouteLine
	root := false
	for _, r := range c.Routes {
		out = append(out, RouteLine{Prefix: r.Prefix, Dependencies: slices.Clone(r.Dependencies), All: r.Dependencies == nil})
		root = root || r.Prefix == "/"
	}
	slices.SortStableFunc(out, func(a, b RouteLine) int { return len(b.Prefix) - len(a.Prefix) })
	if !root {
		out = append(out, RouteLine{Prefix: "/", All: true})
	}
	return out
}

// Validate reports every invalid field, by its path.
func (c *Config) Validate() error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	add(field.HostPort("listen", c.Listen))
	if strings.Contains(c.Socket, "/") {
		if !safeWord(c.Socket) {
			add(field.New("socket", c.Socket, "a socket path without spaces, quotes or #"))
		}
	} else {
		add(field.HostPort("socket", c.Socket))
	}
	if !filepath.IsAbs(c.MapFile) || !safeWord(c.MapFile) || strings.ContainsAny(c.MapFile, ",()") {
		add(field.New("map_file", c.MapFile, "an absolute path without spaces, quotes, #, commas or parentheses"))
	}
	if len(c.Instances) == 0 && !c.Dynamic {
		add(field.New("instances", len(c.Instances), "at least one instance"))
	}
	names := map[string]int{}
	for i, in := range c.Instances {
		p := fmt.Sprintf("instances[%d]", i)
		add(field.HostPort(p+".service", in.Service))
		add(field.HostPort(p+".health", in.Health))
		n := ServerName(in.Service)
		if j, dup := names[n]; dup {
			add(field.New(p+".service", in.Service, fmt.Sprintf("server name %s already taken by instances[%d]", n, j)))
		}
		names[n] = i
	}
	routes := make([]lb.Route, len(c.Routes))
	for i, r := range c.Routes {
		routes[i] = lb.Route{Prefix: r.Prefix, Dependencies: r.Dependencies, All: r.Dependencies == nil}
		if !safeWord(r.Prefix) {
			add(field.New(fmt.Sprintf("routes[%d].prefix", i), r.Prefix, "no spaces, quotes, # or backslashes (a map key)"))
		}
	}
	if _, err := lb.NewRouteTable(routes); err != nil {
		add(err)
	}
	h := c.Health
	if !strings.HasPrefix(h.Path, "/") || !safeWord(h.Path) {
		add(field.New("health.path", h.Path, `must start with "/", without spaces, quotes or #`))
	}
	add(field.Positive("health.interval", h.Interval))
	add(field.Positive("health.timeout", h.Timeout))
	if h.Timeout > h.Interval {
		add(field.New("health.timeout", h.Timeout.String(), "at most health.interval"))
	}
	add(field.Between("health.rise", h.Rise, 1, 1000))
	add(field.Between("health.fall", h.Fall, 1, 1000))
	t := c.Timeouts
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"connect", t.Connect}, {"client", t.Client}, {"server", t.Server}, {"http_request", t.HTTPRequest},
		{"http_keep_alive", t.HTTPKeepAlive}, {"queue", t.Queue}, {"tunnel", t.Tunnel},
	} {
		add(field.Positive("timeouts."+d.name, d.v))
	}
	add(field.Between("max_conn", c.MaxConn, 1, 1<<24))
	if c.RetryAfter < time.Second {
		add(field.New("retry_after", c.RetryAfter.String(), "at least 1s"))
	}
	return errors.Join(errs...)
}

// safeWord reports whether s can stand as one word in haproxy.cfg or a map
// file: printable ASCII without spaces, quotes, "#" or backslashes.
func safeWord(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || strings.IndexByte("\"'#\\", c) >= 0 {
			return false
		}
	}
	return true
}

// Render validates c and writes haproxy.cfg to w.
func (c *Config) Render(w io.Writer) error {
	if err := c.Validate(); err != nil {
		return fmt.Errorf("haproxy config: %w", err)
	}
	var b bytes.Buffer
	if err := cfgTemplate.Execute(&b, c.view()); err != nil {
		return fmt.Errorf("render haproxy.cfg: %w", err)
	}
	if _, err := w.Write(b.Bytes()); err != nil {
		return fmt.Errorf("write haproxy.cfg: %w", err)
	}
	return nil
}

// RenderMap validates c and writes the share map's initial content to w:
// no entry (every route admits all), and as comments the lines the
// controller writes while a route is shed, in their order (MapEntries,
// longest prefix first), with each route's dependencies.
func (c *Config) RenderMap(w io.Writer) error {
	if err := c.Validate(); err != nil {
		return fmt.Errorf("haproxy config: %w", err)
	}
	var b bytes.Buffer
	b.WriteString("# spillway share map: path prefix -> admitted share in per-mille (1000 all, 0 none).\n")
	b.WriteString("# Empty while every route admits all. While one is shed or ramping the\n")
	b.WriteString("# controller fills it at run time with every route, first match wins:\n")
	for _, e := range c.MapEntries() {
		fmt.Fprintf(&b, "#   %s N   (needs %s)\n", e.Prefix, e.needs())
	}
	if _, err := w.Write(b.Bytes()); err != nil {
		return fmt.Errorf("write share map: %w", err)
	}
	return nil
}

func (e RouteLine) needs() string {
	switch {
	case e.All:
		return "every dependency"
	case len(e.Dependencies) == 0:
		return "no dependency (never shed)"
	}
	return strings.Join(e.Dependencies, ", ")
}

// WriteFiles writes haproxy.cfg to cfgPath and the share map to
// c.MapFile, each through a temporary file renamed into place.
func (c *Config) WriteFiles(cfgPath string) error {
	if err := c.Validate(); err != nil {
		return fmt.Errorf("haproxy config: %w", err)
	}
	if err := writeFile(c.MapFile, c.RenderMap); err != nil {
		return err
	}
	return writeFile(cfgPath, c.Render)
}

func writeFile(path string, render func(io.Writer) error) error {
	var b bytes.Buffer
	if err := render(&b); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// view is what the template reads: c with its words resolved.
type view struct {
	*Config
	SocketBind string // "/path mode 600 ... expose-fd listeners" or "ipv4@h:p"
	Unix       bool
	Check      string // "inter 2000ms fall 3 rise 2"
	Servers    []serverView
	RetryAfter int64
	T          map[string]string
}

type serverView struct {
	Name, Service, Health, Target string
}

func (c *Config) view() view {
	v := view{
		Config:     c,
		Check:      fmt.Sprintf("inter %s fall %d rise %d", ms(c.Health.Interval), c.Health.Fall, c.Health.Rise),
		RetryAfter: int64(c.RetryAfter / time.Second),
		T: map[string]string{
			"connect": ms(c.Timeouts.Connect), "client": ms(c.Timeouts.Client), "server": ms(c.Timeouts.Server),
			"http_request": ms(c.Timeouts.HTTPRequest), "http_keep_alive": ms(c.Timeouts.HTTPKeepAlive),
			"queue": ms(c.Timeouts.Queue), "tunnel": ms(c.Timeouts.Tunnel), "check": ms(c.Health.Timeout),
		},
	}
	if strings.Contains(c.Socket, "/") {
		v.Unix = true
		v.SocketBind = c.Socket + " mode 600 level admin expose-fd listeners"
	} else {
		host, port, _ := net.SplitHostPort(c.Socket)
		family := "ipv4@"
		if strings.Contains(host, ":") {
			family = "ipv6@"
		}
		v.SocketBind = family + net.JoinHostPort(host, port) + " level admin"
	}
	for _, in := range c.Instances {
		v.Servers = append(v.Servers, serverView{Name: ServerName(in.Service), Service: in.Service, Health: in.Health, Target: checkTarget(in)})
	}
	return v
}

// checkTarget is the check's destination on the server line: the health
// port ("port N"), and its host too when it is not the service's.
func checkTarget(in lb.Instance) string {
	sh, _, _ := net.SplitHostPort(in.Service)
	hh, hp, _ := net.SplitHostPort(in.Health)
	if hh != sh {
		return "addr " + hh + " port " + hp
	}
	return "port " + hp
}

// ms is d in HAProxy's syntax, whole milliseconds rounded up.
func ms(d time.Duration) string {
	return strconv.FormatInt(int64((d+time.Millisecond-1)/time.Millisecond), 10) + "ms"
}

var cfgTemplate = template.Must(template.New("haproxy.cfg").Parse(`# haproxy.cfg written by spillway for "spillway controller" (docs/HAPROXY.md).
# spillway decides, HAProxy carries the traffic: the controller polls the
# instances' health ports and changes this HAProxy through its Runtime API
# (the stats socket below), without a reload. Check it with
#   haproxy -c -f haproxy.cfg
# The share map {{.MapFile}} must exist before HAProxy starts; empty is
# right (every route admits all), e.g. "touch {{.MapFile}}".

global
    # The Runtime API, at level admin: the controller sets map values,
    # server weights and states through it. Keep it local.
    stats socket {{.SocketBind}}
    # Connections HAProxy accepts at once; past this the kernel queues them.
    maxconn {{.MaxConn}}
    # HAProxy's own events (servers going up and down) to stderr.
    log stderr format iso local0 notice

defaults
    mode http
    # Keep-alive with clients and instances (HAProxy's default, stated).
    option http-keep-alive
    timeout connect {{index .T "connect"}}
    timeout client {{index .T "client"}}
    timeout server {{index .T "server"}}
    timeout http-request {{index .T "http_request"}}
    timeout http-keep-alive {{index .T "http_keep_alive"}}
    timeout queue {{index .T "queue"}}
    timeout tunnel {{index .T "tunnel"}}
    timeout check {{index .T "check"}}

# The edge: spillway's dependency-aware shedding, evaluated here on every
# request from the share map, which the controller updates at run time.
# No request log, as in HAProxy's default: for one, add "log global" and
# "option httplog" here and log at info in global (each log line costs
# CPU on every request).
frontend {{.FrontendName}}
    bind {{.Listen}}
    maxconn {{.MaxConn}}
    # The admitted share of the request's route, in per-mille: the value
    # of the first line of the map whose prefix starts the path (longest
    # prefix first). The map is empty while nothing is shed: the variable
    # is then not set and the request goes on.
    http-request set-var(txn.spillway_share) path,map_beg({{.MapFile}})
    # Shed when a draw in [0, 1000) is not below the share: 0 sheds all,
    # 1000 admits all, and the controller's recovery ramp raises the share
    # step by step. The answer is spillway lb's: 503, the JSON reason,
    # Retry-After and X-Spillway-Reason; the request never reaches an
    # instance.
    http-request return status 503 content-type application/json string "{\"error\":\"{{.Reason}}\"}" hdr Retry-After {{.RetryAfter}} hdr X-Spillway-Reason {{.Reason}} if { var(txn.spillway_share) -m found } { rand(1000),sub(txn.spillway_share) ge 0 }
    default_backend {{.BackendName}}

# The instances, one server each, named s-HOST-PORT after the service
# address. Every server starts at weight {{.FullWeight}} (full); the controller's
# slow start lowers and raises it with "set weight", so HAProxy's own
# slowstart is not set. HAProxy's check of each health port is a floor
# under the controller: a server whose {{.Health.Path}} fails {{.Health.Fall}} times is out
# even if the controller is gone. Idle connections to the instances are
# shared by every client ("http-reuse always"), as spillway lb's pool and
# nginx's keepalive do: a login API keeps no state on a connection, and
# without it each client connection opens its own to an instance.
backend {{.BackendName}}
    # The servers' events (up, down, drain) go to the global log.
    log global
    balance leastconn
    http-reuse always
    option httpchk GET {{.Health.Path}}
    http-check expect status 200-299
{{- if .Dynamic}}
    # Dynamic: the controller adds a server per instance at run time
    # ("add server", in maintenance, its check on) and deletes it when the
    # instance leaves.
{{- end}}
{{- range .Servers}}
    # service {{.Service}}, health {{.Health}}
    server {{.Name}} {{.Service}} weight {{$.FullWeight}} check {{.Target}} {{$.Check}}
{{- end}}
`))

// The template reads these through view's embedded *Config.

// FrontendName returns the constant of the same name, for the template.
func (view) FrontendName() string { return FrontendName }

// BackendName returns the constant of the same name, for the template.
func (view) BackendName() string { return BackendName }

// FullWeight returns the constant of the same name, for the template.
func (view) FullWeight() int { return FullWeight }

// Reason returns the constant of the same name, for the template.
func (view) Reason() string { return Reason }
