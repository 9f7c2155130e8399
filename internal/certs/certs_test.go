package certs_test

import (
	"context"
	"crypto/tls"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/spillway-dev/spillway/internal/certs"
	"github.com/spillway-dev/spillway/internal/field"
	"github.com/spillway-dev/spillway/internal/testkit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// handshake connects to ln's address with SNI name and returns the
// serial of the certificate the server presents.
func handshake(t *testing.T, addr, name string, ca *testkit.CA) *big.Int {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: name, RootCAs: ca.Pool()})
	if err != nil {
		t.Fatalf("handshake for %q: %v", name, err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber
}

// serve accepts TLS connections on a loopback listener and completes
// their handshakes until the test ends.
func serve(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln := tls.NewListener(testkit.Listen(t), cfg)
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				_ = c.(*tls.Conn).Handshake()
				var b [1]byte
				_, _ = c.Read(b[:]) // until the client closes
				c.Close()
			})
		}
	})
	return ln.Addr().String()
}

func TestSNIAndReload(t *testing.T) {
	dir := t.TempDir()
	ca := testkit.NewCA(t)
	c1, k1, s1 := ca.WritePair(t, dir, "a", "a.test", "127.0.0.1")
	c2, k2, s2 := ca.WritePair(t, dir, "b", "b.test")
	reg := prometheus.NewRegistry()
	var logs testkit.SyncBuffer
	st, err := certs.New(certs.Config{CertFile: c1, KeyFile: k1, Certificates: []certs.Pair{{c2, k2}}},
		certs.Options{Registerer: reg, Name: "t", Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, st.ServerConfig())
	if got := handshake(t, addr, "b.test", ca); got.Cmp(s2) != 0 {
		t.Errorf("SNI b.test: serial %v, want %v", got, s2)
	}
	if got := handshake(t, addr, "a.test", ca); got.Cmp(s1) != 0 {
		t.Errorf("SNI a.test: serial %v, want %v", got, s1)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- st.Run(ctx) }()
	defer func() { cancel(); <-done }()

	// A connection made before the rotation goes on after it.
	old, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "a.test", RootCAs: ca.Pool()})
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()

	// Rotation by rename: the watch reloads.
	_, _, s3 := ca.WritePair(t, dir, "a", "a.test", "127.0.0.1")
	testkit.WaitFor(t, 5*time.Second, "new certificate served", func() bool {
		return handshake(t, addr, "a.test", ca).Cmp(s3) == 0
	})
	if got := old.ConnectionState().PeerCertificates[0].SerialNumber; got.Cmp(s1) != 0 {
		t.Errorf("old connection's certificate: serial %v, want %v", got, s1)
	}
	if _, err := old.Write([]byte("x")); err != nil {
		t.Errorf("connection made before the rotation: %v", err)
	}

	// A broken file: the reload fails, the certificates in use stay.
	if err := os.WriteFile(filepath.Join(dir, "a.key.tmp"), []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "a.key.tmp"), k1); err != nil {
		t.Fatal(err)
	}
	if err := st.Reload(); err == nil {
		t.Fatal("reload of a broken key succeeded")
	}
	if got := handshake(t, addr, "a.test", ca); got.Cmp(s3) != 0 {
		t.Errorf("after a failed reload: serial %v, want %v (kept)", got, s3)
	}
	if n, err := testutil.GatherAndCount(reg, "t_tls_reloads_total"); err != nil || n != 2 {
		t.Errorf("t_tls_reloads_total: %d series (%v), want success and failure", n, err)
	}
	if !strings.Contains(logs.String(), "reload failed") {
		t.Errorf("failure not logged: %s", logs.String())
	}
}

func TestClientCA(t *testing.T) {
	dir := t.TempDir()
	ca := testkit.NewCA(t)
	c, k, _ := ca.WritePair(t, dir, "srv", "127.0.0.1")
	st, err := certs.New(certs.Config{CertFile: c, KeyFile: k, ClientCAFile: ca.WriteCA(t, dir, "ca.pem")}, certs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, st.ServerConfig())
	try := func(cfg *tls.Config) error {
		conn, err := tls.Dial("tcp", addr, cfg)
		if err != nil {
			return err
		}
		defer conn.Close()
		// TLS 1.3: the server's verdict on the client comes with the
		// first read.
		_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		var b [1]byte
		_, err = conn.Read(b[:])
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			return nil
		}
		return err
	}
	if err := try(&tls.Config{RootCAs: ca.Pool()}); err == nil {
		t.Error("no client certificate: accepted")
	}
	if err := try(&tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{ca.ClientCertificate(t, "client")}}); err != nil {
		t.Errorf("client certificate refused: %v", err)
	}
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	ca := testkit.NewCA(t)
	c, k, _ := ca.WritePair(t, dir, "ok", "x.test")
	_, k2, _ := ca.WritePair(t, dir, "other", "y.test")
	junk := filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(junk, []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	tests := []struct {
		name string
		c    certs.Config
		want string // "" for valid
	}{
		{"off", certs.Config{}, ""},
		{"ok", certs.Config{CertFile: c, KeyFile: k, ClientCAFile: ca.WriteCA(t, dir, "ca.pem")}, ""},
		{"only certificates", certs.Config{Certificates: []certs.Pair{{c, k}}}, ""},
		{"no key", certs.Config{CertFile: c}, `key_file: "": required with cert_file`},
		{"no cert", certs.Config{KeyFile: k}, `cert_file: "": required with key_file`},
		{"missing", certs.Config{CertFile: missing, KeyFile: k}, `cert_file: "` + missing + `": open ` + missing},
		{"mismatch", certs.Config{CertFile: c, KeyFile: k2}, "private key does not match public key"},
		{"pair in list", certs.Config{CertFile: c, KeyFile: k, Certificates: []certs.Pair{{c, ""}}}, `certificates[0].key_file: "": required`},
		{"ca without certs", certs.Config{ClientCAFile: c}, "client_ca_file: " + `"` + c + `": needs cert_file`},
		{"junk ca", certs.Config{CertFile: c, KeyFile: k, ClientCAFile: junk}, "client_ca_file: \"" + junk + "\": no PEM certificate"},
		{"unreadable ca", certs.Config{CertFile: c, KeyFile: k, ClientCAFile: missing}, "client_ca_file: \"" + missing + "\": open"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("Validate = %v, want %q", err, tt.want)
			}
			if err != nil {
				if _, ok := field.Unjoin(err)[0].(*field.Error); !ok {
					t.Errorf("not a field error: %T", err)
				}
			}
		})
	}
	if err := os.Chmod(k, 0); err == nil && syscall.Getuid() != 0 {
		if err := (&certs.Config{CertFile: c, KeyFile: k}).Validate(); err == nil || !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("unreadable key: %v", err)
		}
	}
}
