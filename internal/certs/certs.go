// Package certs serves a listener's TLS certificates from files: one or
// several certificate/key pairs, the one a client asks for by SNI chosen
// per handshake (the first when none fits), reloaded without dropping a
// connection: new handshakes get the new certificates, connections already
// established go on with theirs. A reload (Store.Reload, on SIGHUP, or Run
// on a change in the files' directories) is all or nothing: if any pair
// fails to load, the certificates in use stay and the failure is logged
// and counted.
//
// Config is the file-facing `tls:` section; a Store is built from a
// validated Config with New. A Store is safe for concurrent use; Run owns
// its file watch and returns when its context is done. Nothing needs to
// be closed.
package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/spillway-dev/spillway/internal/field"
)

// Pair is one certificate and its private key, as PEM files.
type Pair struct {
	// CertFile is the certificate chain, leaf first (PEM).
	CertFile string `yaml:"cert_file"`
	// KeyFile is the leaf's private key (PEM).
	KeyFile string `yaml:"key_file"`
}

// Config is a listener's `tls:` section. TLS is on when it names at least
// one pair (Enabled); the zero value is plain TCP.
type Config struct {
	// CertFile and KeyFile are the first pair: the one served to a client
	// that sends no SNI, or a name no pair covers. Default "": none.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// Certificates are further pairs, chosen by the name the client asks
	// for (SNI) against each certificate's names. Default none.
	Certificates []Pair `yaml:"certificates"`
	// ClientCAFile, when set, makes client certificates mandatory: a
	// client must present one signed by a CA in this PEM file
	// (RequireAndVerifyClientCert). Read at start; a change needs a
	// restart. Default "": no client certificates asked for.
	ClientCAFile string `yaml:"client_ca_file"`
}

// Enabled reports whether c names any certificate: TLS is on.
func (c *Config) Enabled() bool {
	return c.CertFile != "" || c.KeyFile != "" || len(c.Certificates) > 0
}

// Pairs returns every pair, the first (CertFile, KeyFile) first.
func (c *Config) Pairs() []Pair {
	var out []Pair
	if c.CertFile != "" || c.KeyFile != "" {
		out = append(out, Pair{c.CertFile, c.KeyFile})
	}
	return append(out, c.Certificates...)
}

// Equal reports whether c and o are the same settings.
func (c *Config) Equal(o *Config) bool {
	return c.CertFile == o.CertFile && c.KeyFile == o.KeyFile && c.ClientCAFile == o.ClientCAFile &&
		slices.Equal(c.Certificates, o.Certificates)
}

// Validate checks the section, reading the files: each pair names both
// files, which load as a matching certificate and key; a client CA file
// needs certificates and must hold at least one PEM certificate. Paths are
// relative to the section ("cert_file", "certificates[1].key_file").
func (c *Config) Validate() error {
	var errs []error
	check := func(path string, p Pair) {
		switch {
		case p.CertFile == "":
			errs = append(errs, field.New(path+"cert_file", p.CertFile, "required with "+path+"key_file"))
		case p.KeyFile == "":
			errs = append(errs, field.New(path+"key_file", p.KeyFile, "required with "+path+"cert_file"))
		default:
			if _, err := loadPair(p); err != nil {
				errs = append(errs, field.New(path+"cert_file", p.CertFile, err.Error()))
			}
		}
	}
	if c.CertFile != "" || c.KeyFile != "" {
		check("", Pair{c.CertFile, c.KeyFile})
	}
	for i, p := range c.Certificates {
		check(fmt.Sprintf("certificates[%d].", i), p)
	}
	if c.ClientCAFile != "" {
		if !c.Enabled() {
			errs = append(errs, field.New("client_ca_file", c.ClientCAFile, "needs cert_file and key_file: client certificates are asked for over TLS only"))
		} else if _, err := LoadCAs(c.ClientCAFile); err != nil {
			errs = append(errs, field.New("client_ca_file", c.ClientCAFile, err.Error()))
		}
	}
	return errors.Join(errs...)
}

// LoadCAs reads a PEM file of CA certificates into a pool; a file without
// any is an error.
func LoadCAs(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, errors.New("no PEM certificate in the file")
	}
	return pool, nil
}

// loadPair loads one pair, its leaf parsed.
func loadPair(p Pair) (*tls.Certificate, error) {
	c, err := tls.LoadX509KeyPair(p.CertFile, p.KeyFile)
	if err != nil {
		return nil, err
	}
	if c.Leaf == nil {
		if c.Leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return nil, err
		}
	}
	return &c, nil
}

// Options configure a Store.
type Options struct {
	// Logger receives a line per reload. Nil: discard.
	Logger *slog.Logger
	// Registerer, if set, receives NAME_tls_reloads_total{result} and
	// NAME_tls_last_reload_success_timestamp_seconds; Name is the metric
	// prefix, e.g. "spillway_lb".
	Registerer prometheus.Registerer
	Name       string
}

// Store holds the certificates in use and reloads them.
type Store struct {
	pairs     []Pair
	clientCAs *x509.CertPool
	log       *slog.Logger
	certs     atomic.Pointer[[]*tls.Certificate]
	mu        sync.Mutex // serializes reloads
	reloads   *prometheus.CounterVec
	lastOK    prometheus.Gauge
}

// New loads c's certificates (and client CAs). c must be Enabled.
func New(c Config, opts Options) (*Store, error) {
	if !c.Enabled() {
		return nil, errors.New("certs: no certificate configured")
	}
	s := &Store{pairs: c.Pairs(), log: opts.Logger}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if c.ClientCAFile != "" {
		pool, err := LoadCAs(c.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("client_ca_file %s: %w", c.ClientCAFile, err)
		}
		s.clientCAs = pool
	}
	s.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: opts.Name + "_tls_reloads_total",
		Help: "TLS certificate reloads by result (success, failure); a failed reload keeps the certificates in use.",
	}, []string{"result"})
	s.lastOK = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: opts.Name + "_tls_last_reload_success_timestamp_seconds",
		Help: "When the TLS certificates in use were loaded, as a Unix time.",
	})
	if opts.Registerer != nil {
		for _, c := range []prometheus.Collector{s.reloads, s.lastOK} {
			if err := opts.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("certs: register metrics: %w", err)
			}
		}
	}
	if err := s.load(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Store) load() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	list := make([]*tls.Certificate, 0, len(s.pairs))
	for _, p := range s.pairs {
		c, err := loadPair(p)
		if err != nil {
			return fmt.Errorf("certificate %s, key %s: %w", p.CertFile, p.KeyFile, err)
		}
		list = append(list, c)
	}
	s.certs.Store(&list)
	s.lastOK.SetToCurrentTime()
	return nil
}

// Reload loads every pair again and, if all load, serves them to the next
// handshakes; otherwise it keeps those in use, logs and counts the
// failure, and returns it.
func (s *Store) Reload() error {
	if err := s.load(); err != nil {
		s.reloads.WithLabelValues("failure").Inc()
		s.log.Error("TLS certificates reload failed; keeping the certificates in use", "error", err)
		return err
	}
	s.reloads.WithLabelValues("success").Inc()
	attrs := make([]any, 0, 2*len(s.pairs))
	for i, c := range *s.certs.Load() {
		attrs = append(attrs, fmt.Sprintf("cert_%d", i), fmt.Sprintf("%s serial %x not_after %s",
			s.pairs[i].CertFile, c.Leaf.SerialNumber, c.Leaf.NotAfter.UTC().Format(time.RFC3339)))
	}
	s.log.Info("TLS certificates reloaded", attrs...)
	return nil
}

// Certificates returns the certificates in use, the fallback first. The
// caller must not change them.
func (s *Store) Certificates() []*tls.Certificate { return *s.certs.Load() }

// GetCertificate is tls.Config.GetCertificate: the first certificate that
// fits the client's hello (its SNI name, signature schemes and curves),
// else the first.
func (s *Store) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	list := *s.certs.Load()
	if len(list) > 1 {
		for _, c := range list {
			if hello.SupportsCertificate(c) == nil {
				return c, nil
			}
		}
	}
	return list[0], nil
}

// ServerConfig returns a server tls.Config serving the Store's
// certificates: TLS 1.2 at least, Go's default cipher suites and curves,
// client certificates required when a client CA file is set. The caller
// may set NextProtos (http.Server.ServeTLS adds h2 and http/1.1).
func (s *Store) ServerConfig() *tls.Config {
	c := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: s.GetCertificate,
	}
	if s.clientCAs != nil {
		c.ClientCAs = s.clientCAs
		c.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return c
}

// settle is how long Run waits after a change in the watched directories
// before reloading: a key and a certificate replaced one after the other
// (or cert-manager's several renames) make one reload.
const settle = 200 * time.Millisecond

// Run reloads the certificates after every change in the directories of
// their files (renames included: editors and cert-manager replace a file
// by renaming another over it), until ctx is done. A watch that cannot be
// set up is logged; SIGHUP (Reload) still works then.
func (s *Store) Run(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		s.log.Warn("cannot watch the TLS certificate files; reload them with SIGHUP", "error", err)
		<-ctx.Done()
		return nil
	}
	defer w.Close()
	var dirs []string
	for _, p := range s.pairs {
		for _, f := range []string{p.CertFile, p.KeyFile} {
			if d := filepath.Dir(f); !slices.Contains(dirs, d) {
				dirs = append(dirs, d)
			}
		}
	}
	for _, d := range dirs {
		if err := w.Add(d); err != nil {
			s.log.Warn("cannot watch a TLS certificate directory; reload with SIGHUP", "dir", d, "error", err)
		}
	}
	t := time.NewTimer(settle)
	t.Stop()
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				<-ctx.Done()
				return nil
			}
			if ev.Op != fsnotify.Chmod {
				t.Reset(settle)
			}
		case err, ok := <-w.Errors:
			if !ok {
				<-ctx.Done()
				return nil
			}
			s.log.Warn("TLS certificate watch error", "error", err)
		case <-t.C:
			_ = s.Reload() // logged and counted
		}
	}
}
