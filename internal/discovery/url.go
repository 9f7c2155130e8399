package discovery

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spillway-dev/spillway/internal/field"
	"github.com/spillway-dev/spillway/internal/lb"
)

// The schemes ParseURL reads.
const (
	SchemeFile       = "file"
	SchemeSRV        = "dns+srv"
	SchemeKubernetes = "kubernetes"
)

// Defaults and floors of the URL options.
const (
	// DefaultFileInterval is how often File re-reads its file even
	// without a change event: the safety net for events that are lost (a
	// directory replaced, a network file system).
	DefaultFileInterval = 5 * time.Second
	// DefaultSRVInterval is how often SRV resolves its name.
	DefaultSRVInterval = 10 * time.Second
	// MinInterval is the shortest interval a URL may ask for.
	MinInterval = time.Second
)

// ErrUnknownScheme is returned (wrapped) by ParseURL and New for a URL
// whose scheme this package does not handle, such as etcd://: the caller
// dispatches those elsewhere. Any other error
// means the URL is one of ours and is wrong.
var ErrUnknownScheme = errors.New("unknown discovery scheme")

// URLError is ParseURL's error for a URL of its schemes that is wrong:
// Err says what is wrong (several lines when several things are), URL is
// the URL with any password redacted.
type URLError struct {
	URL string
	Err error
}

func (e *URLError) Error() string { return fmt.Sprintf("discovery URL %q: %v", e.URL, e.Err) }

func (e *URLError) Unwrap() error { return e.Err }

// Spec describes a discovery source, as ParseURL reads it from a URL.
// Exactly one of File, SRV and Kubernetes is set, as Scheme says; their
// Log, Resolver and After are left nil for the caller.
type Spec struct {
	// Scheme is SchemeFile, SchemeSRV or SchemeKubernetes.
	Scheme string
	// File is the file source's configuration, when Scheme is SchemeFile.
	File FileConfig
	// SRV is the SRV source's configuration, when Scheme is SchemeSRV.
	SRV SRVConfig
	// Kubernetes is the Kubernetes source's configuration, when Scheme is
	// SchemeKubernetes.
	Kubernetes KubernetesConfig
}

// ParseURL reads a discovery URL:
//
//	file:///abs/path/instances.yaml[?interval=5s]
//	dns+srv://_login._tcp.example.com[?interval=10s][&health_port=9090 | &health_srv=_health._tcp.example.com]
//	kubernetes://NAMESPACE/SERVICE[?kubeconfig=/abs/path/kubeconfig]
//
// interval is a Go duration of at least MinInterval (defaults
// DefaultFileInterval and DefaultSRVInterval); health_port and health_srv
// say where SRV's instances are health checked (SRVConfig); kubeconfig
// is for use outside the cluster (KubernetesConfig). Unknown or repeated
// options, user information, fragments and relative paths are errors,
// each naming what is wrong. A scheme other than file, dns+srv or
// kubernetes returns an error wrapping ErrUnknownScheme.
func ParseURL(raw string) (Spec, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return Spec{}, fmt.Errorf("discovery URL: %w", err)
	}
	shown := u.Redacted() // an etcd URL may carry a password
	fail := func(errs ...error) (Spec, error) {
		return Spec{}, &URLError{URL: shown, Err: errors.Join(errs...)}
	}
	var errs []error
	if u.User != nil {
		errs = append(errs, errors.New("user information is not allowed"))
	}
	if u.Fragment != "" || strings.HasSuffix(raw, "#") {
		errs = append(errs, errors.New("a fragment (#...) is not allowed"))
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		errs = append(errs, fmt.Errorf("query: %w", err))
	}
	opts := options{q: q}
	var s Spec
	switch u.Scheme {
	case SchemeFile:
		s.Scheme = SchemeFile
		if u.Opaque != "" || !filepath.IsAbs(u.Path) {
			errs = append(errs, errors.New("a file URL needs an absolute path: file:///path/to/instances.yaml"))
		}
		if u.Host != "" && u.Host != "localhost" {
			errs = append(errs, field.New("host", u.Host, "a file URL names a local file; want file:///path"))
		}
		s.File = FileConfig{
			Path:     filepath.Clean(u.Path),
			Interval: opts.interval(DefaultFileInterval),
		}
	case SchemeSRV:
		s.Scheme = SchemeSRV
		if u.Opaque != "" {
			errs = append(errs, errors.New("want dns+srv://_service._proto.example.com"))
		}
		name := u.Host
		if u.Port() != "" {
			errs = append(errs, field.New("host", u.Host, "has a port; the SRV records give the ports"))
			name = u.Hostname()
		}
		if err := checkName("name", name); err != nil {
			errs = append(errs, err)
		}
		if u.Path != "" && u.Path != "/" {
			errs = append(errs, field.New("path", u.Path, "not allowed; the name is the URL's host"))
		}
		s.SRV = SRVConfig{
			Name:       name,
			Interval:   opts.interval(DefaultSRVInterval),
			HealthPort: opts.port("health_port"),
			HealthName: opts.str("health_srv"),
		}
		if s.SRV.HealthName != "" {
			opts.add(checkName("health_srv", s.SRV.HealthName))
		}
		if s.SRV.HealthPort != 0 && s.SRV.HealthName != "" {
			opts.add(errors.New("health_port and health_srv: give one, not both"))
		}
	case SchemeKubernetes:
		s.Scheme = SchemeKubernetes
		if u.Opaque != "" || u.Host == "" {
			errs = append(errs, errors.New("want kubernetes://NAMESPACE/SERVICE"))
		}
		ns := u.Host
		if u.Port() != "" || strings.HasSuffix(u.Host, ":") {
			errs = append(errs, field.New("host", u.Host, "has a port; the host is the namespace"))
			ns = u.Hostname()
		}
		svc, ok := strings.CutPrefix(u.Path, "/")
		switch {
		case u.Opaque != "" || u.Host == "":
		case !ok || svc == "":
			errs = append(errs, field.New("service", "", "required: kubernetes://NAMESPACE/SERVICE"))
		default:
			opts.add(checkServiceName("service", svc))
		}
		if u.Opaque == "" && u.Host != "" {
			opts.add(checkNamespace("namespace", ns))
		}
		s.Kubernetes = KubernetesConfig{Namespace: ns, Service: svc, Kubeconfig: opts.str("kubeconfig")}
		if kc := s.Kubernetes.Kubeconfig; kc != "" {
			if !filepath.IsAbs(kc) {
				opts.add(field.New("kubeconfig", kc, "must be an absolute path"))
			}
			s.Kubernetes.Kubeconfig = filepath.Clean(kc)
		}
	case "":
		return fail(errors.New("no scheme; want file:///path, dns+srv://name or kubernetes://namespace/service"))
	default:
		return Spec{}, fmt.Errorf("discovery URL %q: scheme %q: %w (this package reads file, dns+srv and kubernetes)", shown, u.Scheme, ErrUnknownScheme)
	}
	errs = append(errs, opts.errs...)
	errs = append(errs, opts.unknown()...)
	if len(errs) > 0 {
		return fail(errs...)
	}
	return s, nil
}

// String returns the spec as a URL that ParseURL reads back to it.
func (s Spec) String() string {
	q := url.Values{}
	var u url.URL
	switch s.Scheme {
	case SchemeFile:
		u = url.URL{Scheme: SchemeFile, Path: s.File.Path}
		q.Set("interval", s.File.Interval.String())
	case SchemeSRV:
		u = url.URL{Scheme: SchemeSRV, Host: s.SRV.Name}
		q.Set("interval", s.SRV.Interval.String())
		if s.SRV.HealthPort != 0 {
			q.Set("health_port", strconv.Itoa(s.SRV.HealthPort))
		}
		if s.SRV.HealthName != "" {
			q.Set("health_srv", s.SRV.HealthName)
		}
	case SchemeKubernetes:
		u = url.URL{Scheme: SchemeKubernetes, Host: s.Kubernetes.Namespace, Path: "/" + s.Kubernetes.Service}
		if s.Kubernetes.Kubeconfig != "" {
			q.Set("kubeconfig", s.Kubernetes.Kubeconfig)
		}
	default:
		return s.Scheme + ":"
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// New builds the source s describes, logging to log (nil: discarded). A
// Kubernetes source gets a client from its kubeconfig file, or from the
// pod's service account (an error outside a cluster); nothing is
// contacted yet.
func New(s Spec, log *slog.Logger) (lb.Discovery, error) {
	switch s.Scheme {
	case SchemeFile:
		c := s.File
		c.Log = log
		return NewFile(c)
	case SchemeSRV:
		c := s.SRV
		c.Log = log
		return NewSRV(c)
	case SchemeKubernetes:
		c := s.Kubernetes
		c.Log = log
		if err := errors.Join(checkNamespace("namespace", c.Namespace), checkServiceName("service", c.Service)); err != nil {
			return nil, fmt.Errorf("discovery kubernetes %s/%s: %w", c.Namespace, c.Service, err)
		}
		return newKubernetesSource(c)
	default:
		return nil, fmt.Errorf("discovery: scheme %q: %w", s.Scheme, ErrUnknownScheme)
	}
}

// options reads a URL's query, remembering what it used and what was
// wrong.
type options struct {
	q    url.Values
	used []string
	errs []error
}

func (o *options) add(err error) {
	if err != nil {
		o.errs = append(o.errs, err)
	}
}

// str returns the option's only value, "" when absent.
func (o *options) str(key string) string {
	o.used = append(o.used, key)
	vs := o.q[key]
	switch len(vs) {
	case 0:
		return ""
	case 1:
		return vs[0]
	default:
		o.add(field.New(key, strings.Join(vs, ","), "given more than once"))
		return vs[0]
	}
}

func (o *options) interval(def time.Duration) time.Duration {
	v := o.str("interval")
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	switch {
	case err != nil:
		o.add(field.New("interval", v, "not a duration (10s, 1m)"))
	case d < MinInterval:
		o.add(field.New("interval", v, "must be at least "+MinInterval.String()))
	default:
		return d
	}
	return def
}

func (o *options) port(key string) int {
	v := o.str(key)
	if v == "" {
		return 0
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 65535 {
		o.add(field.New(key, v, "must be a port from 1 to 65535"))
		return 0
	}
	return n
}

// unknown returns an error for each option that nothing read.
func (o *options) unknown() []error {
	var errs []error
	for _, key := range slices.Sorted(maps.Keys(o.q)) {
		if !slices.Contains(o.used, key) {
			errs = append(errs, field.New(key, o.q.Get(key), "unknown option"))
		}
	}
	return errs
}

// checkName checks a DNS name to look up: labels of letters, digits, '-'
// and '_' (the SRV name's service and protocol labels), 1 to 63 bytes
// each, 253 in all, an optional final dot.
func checkName(path, name string) error {
	n := strings.TrimSuffix(name, ".")
	if n == "" {
		return field.New(path, name, "required: a DNS name such as _login._tcp.example.com")
	}
	if len(n) > 253 {
		return field.New(path, name, "longer than 253 bytes")
	}
	for l := range strings.SplitSeq(n, ".") {
		if l == "" || len(l) > 63 {
			return field.New(path, name, "each label must be 1 to 63 bytes")
		}
		for _, c := range []byte(l) {
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return field.New(path, name, "not a DNS name (letters, digits, '-', '_' and dots)")
			}
		}
	}
	return nil
}
