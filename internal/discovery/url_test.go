package discovery

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/spillway-dev/spillway/internal/testkit"
)

func TestParseURL(t *testing.T) {
	tests := []struct {
		raw  string
		want Spec
	}{
		{"file:///etc/spillway/instances.yaml", Spec{Scheme: SchemeFile, File: FileConfig{Path: "/etc/spillway/instances.yaml", Interval: DefaultFileInterval}}},
		{"file://localhost/srv/a/../i.yaml?interval=2s", Spec{Scheme: SchemeFile, File: FileConfig{Path: "/srv/i.yaml", Interval: 2 * time.Second}}},
		{"FILE:///x%20y.yaml", Spec{Scheme: SchemeFile, File: FileConfig{Path: "/x y.yaml", Interval: DefaultFileInterval}}},
		{"dns+srv://_login._tcp.example.com", Spec{Scheme: SchemeSRV, SRV: SRVConfig{Name: "_login._tcp.example.com", Interval: DefaultSRVInterval}}},
		{"dns+srv://login.service.consul./?interval=30s&health_port=9000", Spec{Scheme: SchemeSRV, SRV: SRVConfig{Name: "login.service.consul.", Interval: 30 * time.Second, HealthPort: 9000}}},
		{"dns+srv://_login._tcp.login.default.svc.cluster.local?health_srv=_health._tcp.login.default.svc.cluster.local", Spec{Scheme: SchemeSRV, SRV: SRVConfig{
			Name: "_login._tcp.login.default.svc.cluster.local", Interval: DefaultSRVInterval, HealthName: "_health._tcp.login.default.svc.cluster.local"}}},
		{"kubernetes://default/login", Spec{Scheme: SchemeKubernetes, Kubernetes: KubernetesConfig{Namespace: "default", Service: "login"}}},
		{"KUBERNETES://spillway-prod/login-v2?kubeconfig=/home/me/.kube/../config", Spec{Scheme: SchemeKubernetes, Kubernetes: KubernetesConfig{
			Namespace: "spillway-prod", Service: "login-v2", Kubeconfig: "/home/me/config"}}},
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			got, err := ParseURL(tt.raw)
			if err != nil {
				t.Fatalf("ParseURL: %v", err)
			}
			if d := cmp.Diff(tt.want, got, cmpopts.IgnoreFields(SRVConfig{}, "After")); d != "" {
				t.Errorf("ParseURL (-want +got):\n%s", d)
			}
			back, err := ParseURL(got.String())
			if err != nil || !cmp.Equal(back, got, cmpopts.IgnoreFields(SRVConfig{}, "After")) {
				t.Errorf("String %q reads back as %+v, %v", got.String(), back, err)
			}
		})
	}
}

func TestParseURLErrors(t *testing.T) {
	tests := []struct{ raw, want string }{
		{"", "no scheme"},
		{"/etc/instances.yaml", "no scheme"},
		{"file:instances.yaml", "needs an absolute path"},
		{"file://instances.yaml", `host: "instances.yaml": a file URL names a local file`},
		{"file:///i.yaml?interval=10ms", `interval: "10ms": must be at least 1s`},
		{"file:///i.yaml?interval=soon", `interval: "soon": not a duration`},
		{"file:///i.yaml?interval=1s&interval=2s", "interval: \"1s,2s\": given more than once"},
		{"file:///i.yaml?health_port=1", `health_port: "1": unknown option`},
		{"file:///i.yaml#x", "fragment"},
		{"dns+srv://", `name: "": required`},
		{"dns+srv://_login._tcp.example.com:53", "has a port; the SRV records give the ports"},
		{"dns+srv://_login._tcp.example.com/x", `path: "/x": not allowed`},
		{"dns+srv://user:secret@example.com", "user information is not allowed"},
		{"dns+srv://a..b", "each label must be 1 to 63 bytes"},
		{"dns+srv://[::1]", "not a DNS name"},
		{"dns+srv:_login._tcp.example.com", "want dns+srv://"},
		{"dns+srv://x.test?health_port=0", `health_port: "0": must be a port from 1 to 65535`},
		{"dns+srv://x.test?health_port=9000&health_srv=_h._tcp.x.test", "give one, not both"},
		{"dns+srv://x.test?health_srv=a%20b", `health_srv: "a b": not a DNS name`},
		{"dns+srv://x.test?bogus=1&interval=0s", "must be at least 1s\nbogus: \"1\": unknown option"},
		{"dns+srv://x.test?a=%zz", "query: invalid URL escape"},
		{"kubernetes:///login", "want kubernetes://NAMESPACE/SERVICE"},
		{"kubernetes:default/login", "want kubernetes://NAMESPACE/SERVICE"},
		{"kubernetes://default", `service: "": required`},
		{"kubernetes://default/", `service: "": required`},
		{"kubernetes://default/login/x", `service: "login/x": not a Service name`},
		{"kubernetes://default/Login", `service: "Login": not a Service name`},
		{"kubernetes://default/1login", `service: "1login": not a Service name`},
		{"kubernetes://Default/login", `namespace: "Default": not a namespace name`},
		{"kubernetes://my_ns/login", `namespace: "my_ns": not a namespace name`},
		{"kubernetes://default:6443/login", "has a port; the host is the namespace"},
		{"kubernetes://default/login?kubeconfig=kubeconfig", `kubeconfig: "kubeconfig": must be an absolute path`},
		{"kubernetes://default/login?interval=10s", `interval: "10s": unknown option`},
		{"kubernetes://user:secret@default/login", "user information is not allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			_, err := ParseURL(tt.raw)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ParseURL(%q) = %v, want an error containing %q", tt.raw, err, tt.want)
			}
			if errors.Is(err, ErrUnknownScheme) {
				t.Errorf("ParseURL(%q): %v is ErrUnknownScheme, want a validation error", tt.raw, err)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("the error shows the password: %v", err)
			}
		})
	}
}

// Other sources' schemes are left to the caller, with ErrUnknownScheme,
// and never show a password.
func TestParseURLUnknownScheme(t *testing.T) {
	for _, raw := range []string{"etcd://user:secret@127.0.0.1:2379/spillway/instances", "http://example.com"} {
		_, err := ParseURL(raw)
		if !errors.Is(err, ErrUnknownScheme) {
			t.Errorf("ParseURL(%q) = %v, want ErrUnknownScheme", raw, err)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("the error shows the password: %v", err)
		}
	}
	if _, err := New(Spec{Scheme: "etcd"}, nil); !errors.Is(err, ErrUnknownScheme) {
		t.Errorf("New(etcd) = %v, want ErrUnknownScheme", err)
	}
}

func TestNew(t *testing.T) {
	path := t.TempDir() + "/instances.yaml"
	writeInPlace(t, path, oneYAML)
	for _, raw := range []string{"file://" + path, "dns+srv://_login._tcp.example.com?health_port=9000"} {
		s, err := ParseURL(raw)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := New(s, nil); err != nil {
			t.Errorf("New(%q): %v", raw, err)
		}
	}
	s, _ := ParseURL("file:///nonexistent/instances.yaml")
	if _, err := New(s, nil); err == nil || !strings.Contains(err.Error(), "/nonexistent/instances.yaml") {
		t.Errorf("New of a missing file = %v, want an error naming it", err)
	}
	testNewKubernetes(t)
}

func FuzzParseURL(f *testing.F) {
	for _, s := range []string{
		"file:///etc/spillway/instances.yaml?interval=5s",
		"dns+srv://_login._tcp.example.com?interval=10s&health_port=9000",
		"dns+srv://x.test?health_srv=_h._tcp.x.test",
		"etcd://user:pw@127.0.0.1:2379/x",
		"file:rel#frag",
		"dns+srv://[::1]:53/%zz",
		"kubernetes://default/login",
		"kubernetes://spillway-prod/login?kubeconfig=/etc/kube/config",
		"kubernetes:///login",
		"kubernetes://Default/login/x?kubeconfig=rel",
		"kubernetes://default:1/%41",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		s, err := ParseURL(raw)
		if err != nil {
			return
		}
		// A spec ParseURL accepts prints as a URL it reads back, and
		// builds a source unless the file is missing.
		back, err := ParseURL(s.String())
		if err != nil || !cmp.Equal(back, s, cmpopts.IgnoreFields(SRVConfig{}, "After")) {
			t.Fatalf("%q: String %q reads back as %+v, %v; want %+v", raw, s.String(), back, err, s)
		}
		switch s.Scheme {
		case SchemeSRV:
			if _, err := New(s, nil); err != nil {
				t.Fatalf("%q: accepted, but New: %v", raw, err)
			}
		case SchemeKubernetes:
			checkKubernetesSpec(t, raw, s.Kubernetes)
		}
	})
}

func FuzzParseInstances(f *testing.F) {
	testkit.Seed(f, "testdata/*.yaml")
	f.Add([]byte("instances: [{service: '[::1]:1', health: '[::1]:2'}]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		insts, err := ParseInstances(data)
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, in := range insts {
			if seen[in.Service] {
				t.Fatalf("duplicate %s accepted", in.Service)
			}
			seen[in.Service] = true
		}
	})
}
