package lb

// This file holds TLS and HTTP/2: at the edge (server.tls, server.h2c,
// admin_tls: certs.Store, reloaded) and to the instances (transport.tls,
// transport.protocol), for proxied requests and checks alike.

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/spillway-dev/spillway/internal/certs"
)

// upstreamTLS returns the client TLS configuration to instances, nil when
// transport.tls is off. Validated first.
func upstreamTLS(t TransportConfig) (*tls.Config, error) {
	if !t.TLS.Enabled {
		return nil, nil
	}
	c := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         t.TLS.ServerName,
		InsecureSkipVerify: t.TLS.InsecureSkipVerify, //nolint:gosec // the operator's explicit choice, documented as for tests
	}
	if t.TLS.CAFile != "" {
		pool, err := certs.LoadCAs(t.TLS.CAFile)
		if err != nil {
			return nil, fmt.Errorf("lb: transport.tls.ca_file %s: %w", t.TLS.CAFile, err)
		}
		c.RootCAs = pool
	}
	return c, nil
}

// setProtocols sets tr's protocols (transport.protocol) and TLS: HTTP/1.1;
// HTTP/2 over TLS by ALPN, with HTTP/1.1 beside it; or HTTP/2 without TLS.
// Every HTTP/2 timeout is set: a connection whose peer stops answering is
// found by a ping within pingAfter+5s.
func setProtocols(tr *http.Transport, t TransportConfig, tc *tls.Config, pingAfter time.Duration) {
	tr.Protocols = new(http.Protocols)
	switch t.Protocol {
	case ProtocolH2:
		tr.Protocols.SetHTTP1(true)
		tr.Protocols.SetHTTP2(true)
	case ProtocolH2C:
		tr.Protocols.SetUnencryptedHTTP2(true)
	default:
		tr.Protocols.SetHTTP1(true)
	}
	if tc != nil {
		tr.TLSClientConfig = tc.Clone()
	}
	if t.Protocol != ProtocolHTTP1 {
		tr.HTTP2 = &http.HTTP2Config{
			SendPingTimeout:  pingAfter,
			PingTimeout:      5 * time.Second,
			WriteByteTimeout: 10 * time.Second,
		}
	}
}

// scheme is the scheme of the URLs to instances.
func upstreamScheme(t TransportConfig) string {
	if t.TLS.Enabled {
		return "https"
	}
	return "http"
}

// newCertStores builds the edge's certificate stores (nil where TLS is
// off), registering their metrics.
func (b *Balancer) newCertStores(c *Config) error {
	var err error
	if c.Server.TLS.Enabled() {
		if b.certs, err = certs.New(c.Server.TLS, certs.Options{Logger: b.log, Registerer: b.reg, Name: "spillway_lb"}); err != nil {
			return fmt.Errorf("lb: server.tls: %w", err)
		}
	}
	if c.AdminTLS.Enabled() {
		if b.adminCerts, err = certs.New(c.AdminTLS, certs.Options{Logger: b.log, Registerer: b.reg, Name: "spillway_lb_admin"}); err != nil {
			return fmt.Errorf("lb: admin_tls: %w", err)
		}
	}
	return nil
}

// HasCertificates reports whether the proxy or the admin listener serves
// TLS (server.tls, admin_tls): whether ReloadCertificates has anything to
// reload.
func (b *Balancer) HasCertificates() bool { return b.certs != nil || b.adminCerts != nil }

// ReloadCertificates reloads the certificate files of server.tls and
// admin_tls, each all or nothing: one that fails keeps the certificates in
// use (logged and counted in spillway_lb_tls_reloads_total). It returns
// the failures; with TLS off it does nothing. The files are also reloaded
// when they change (Run watches their directories).
func (b *Balancer) ReloadCertificates() error {
	var errs []error
	if b.certs != nil {
		errs = append(errs, b.certs.Reload())
	}
	if b.adminCerts != nil {
		errs = append(errs, b.adminCerts.Reload())
	}
	return errors.Join(errs...)
}

// transportRestartOnly keeps the transport settings that need a restart
// (protocol, tls) at their running values in next, and reports whether
// they differed.
func transportRestartOnly(running TransportConfig, next *TransportConfig) bool {
	changed := running.Protocol != next.Protocol || running.TLS != next.TLS
	next.Protocol, next.TLS = running.Protocol, running.TLS
	return changed
}
