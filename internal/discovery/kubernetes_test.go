//go:build kubernetes

package discovery

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/spillway-dev/spillway/internal/lb"
	"github.com/spillway-dev/spillway/internal/testkit"
)

// ep is an endpoint of pod uid at addr, ready or not, terminating or not.
func ep(uid, addr string, ready, terminating bool) discoveryv1.Endpoint {
	e := discoveryv1.Endpoint{
		Addresses:  []string{addr},
		Conditions: discoveryv1.EndpointConditions{Ready: &ready, Serving: &ready, Terminating: &terminating},
	}
	if uid != "" {
		e.TargetRef = &corev1.ObjectReference{Kind: "Pod", Name: uid, UID: types.UID(uid)}
	}
	return e
}

// port is a named EndpointSlice port.
func port(name string, n int32) discoveryv1.EndpointPort {
	return discoveryv1.EndpointPort{Name: &name, Port: &n}
}

// slice is an EndpointSlice of service login in namespace default, with
// the ports http 8001 and health 9001 unless ports are given.
func slice(name string, family discoveryv1.AddressType, eps []discoveryv1.Endpoint, ports ...discoveryv1.EndpointPort) *discoveryv1.EndpointSlice {
	if ports == nil {
		ports = []discoveryv1.EndpointPort{port("http", 8001), port("health", 9001)}
	}
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name:      name,
			Namespace: "default",
			Labels:    map[string]string{discoveryv1.LabelServiceName: "login"},
		},
		AddressType: family,
		Endpoints:   eps,
		Ports:       ports,
	}
}

func TestKubernetesInstances(t *testing.T) {
	v4, v6 := discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6
	nilReady := discoveryv1.Endpoint{Addresses: []string{"10.0.0.9"}} // conditions all nil: ready, not terminating
	tests := []struct {
		name    string
		slices  []*discoveryv1.EndpointSlice
		want    []lb.Instance
		skipped string
	}{
		{"none", nil, []lb.Instance{}, ""},
		{"ready, nil ready, not ready", []*discoveryv1.EndpointSlice{slice("a", v4, []discoveryv1.Endpoint{
			ep("p2", "10.0.0.2", true, false), nilReady, ep("p3", "10.0.0.3", false, false), ep("p1", "10.0.0.1", true, false),
		})}, []lb.Instance{
			inst("10.0.0.1:8001", "10.0.0.1:9001"), inst("10.0.0.2:8001", "10.0.0.2:9001"), inst("10.0.0.9:8001", "10.0.0.9:9001"),
		}, ""},
		{"terminating leaves, even ready", []*discoveryv1.EndpointSlice{slice("a", v4, []discoveryv1.Endpoint{
			ep("p1", "10.0.0.1", true, true), ep("p2", "10.0.0.2", false, true), ep("p3", "10.0.0.3", true, false),
		})}, []lb.Instance{inst("10.0.0.3:8001", "10.0.0.3:9001")}, ""},
		{"two slices merged and sorted", []*discoveryv1.EndpointSlice{
			slice("b", v4, []discoveryv1.Endpoint{ep("p10", "10.0.0.10", true, false)}),
			slice("a", v4, []discoveryv1.Endpoint{ep("p9", "10.0.0.9", true, false)}),
		}, []lb.Instance{inst("10.0.0.9:8001", "10.0.0.9:9001"), inst("10.0.0.10:8001", "10.0.0.10:9001")}, ""},
		{"an endpoint in two slices (being moved) once", []*discoveryv1.EndpointSlice{
			slice("a", v4, []discoveryv1.Endpoint{ep("p1", "10.0.0.1", true, false)}),
			slice("b", v4, []discoveryv1.Endpoint{ep("p1", "10.0.0.1", true, false), ep("", "10.0.0.1", true, false)}),
		}, []lb.Instance{inst("10.0.0.1:8001", "10.0.0.1:9001")}, ""},
		{"no health port: the service address", []*discoveryv1.EndpointSlice{
			slice("a", v4, []discoveryv1.Endpoint{ep("p1", "10.0.0.1", true, false)}, port("http", 8001), port("metrics", 9100)),
		}, []lb.Instance{inst("10.0.0.1:8001", "10.0.0.1:8001")}, ""},
		{"no http port: slice skipped", []*discoveryv1.EndpointSlice{
			slice("a", v4, []discoveryv1.Endpoint{ep("p1", "10.0.0.1", true, false)}, port("web", 8001), port("health", 9001)),
			slice("b", v4, []discoveryv1.Endpoint{ep("p2", "10.0.0.2", true, false)}),
		}, []lb.Instance{inst("10.0.0.2:8001", "10.0.0.2:9001")}, `slice a: no port named "http"`},
		{"unnamed port: slice skipped", []*discoveryv1.EndpointSlice{
			slice("a", v4, []discoveryv1.Endpoint{ep("p1", "10.0.0.1", true, false)}, port("", 8001)),
		}, []lb.Instance{}, `slice a: no port named "http"`},
		{"dual stack: one instance per pod, on IPv4", []*discoveryv1.EndpointSlice{
			slice("a6", v6, []discoveryv1.Endpoint{ep("p1", "fd00::1", true, false), ep("p2", "fd00::2", true, false)}),
			slice("a4", v4, []discoveryv1.Endpoint{ep("p1", "10.0.0.1", true, false)}),
		}, []lb.Instance{inst("10.0.0.1:8001", "10.0.0.1:9001"), inst("[fd00::2]:8001", "[fd00::2]:9001")}, ""},
		{"FQDN slice skipped", []*discoveryv1.EndpointSlice{
			slice("f", discoveryv1.AddressTypeFQDN, []discoveryv1.Endpoint{{Addresses: []string{"login.example.com"}}}),
		}, []lb.Instance{}, "slice f: address type FQDN (want IPv4 or IPv6)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, skipped, err := KubernetesInstances(tt.slices)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("set (-want +got):\n%s", d)
			}
			if s := strings.Join(skipped, "; "); s != tt.skipped {
				t.Errorf("skipped %q, want %q", s, tt.skipped)
			}
		})
	}
	bad := slice("a", v4, []discoveryv1.Endpoint{ep("p1", "10.0.0.1", true, false), ep("p2", "not-an-ip", true, false)})
	if got, _, err := KubernetesInstances([]*discoveryv1.EndpointSlice{bad}); err == nil || !strings.Contains(err.Error(), `"not-an-ip"`) {
		t.Errorf("a slice with a bad address = %v, %v; want the set refused, naming it", got, err)
	}
}

func TestNewKubernetesErrors(t *testing.T) {
	client := fake.NewSimpleClientset()
	tests := []struct {
		c    KubernetesConfig
		want string
	}{
		{KubernetesConfig{Service: "login"}, `namespace: "": required`},
		{KubernetesConfig{Namespace: "Default", Service: "login"}, `namespace: "Default": not a namespace name`},
		{KubernetesConfig{Namespace: "default", Service: "1login"}, `service: "1login": not a Service name`},
		{KubernetesConfig{Namespace: "default", Service: "login", Kubeconfig: "kubeconfig"}, "must be an absolute path"},
	}
	for _, tt := range tests {
		if _, err := NewKubernetes(tt.c, client); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("NewKubernetes(%+v) = %v, want an error containing %q", tt.c, err, tt.want)
		}
	}
	if _, err := NewKubernetes(KubernetesConfig{Namespace: "default", Service: "login"}, nil); err == nil {
		t.Error("NewKubernetes without a client: no error")
	}
}

// watchKubernetes runs k's Watch until the test ends, and checks that it
// returns nil promptly once its context is done.
func watchKubernetes(t *testing.T, k *Kubernetes) *recorder {
	t.Helper()
	var rec recorder
	// Stopped when the test ends; an error from Watch, or no return within
	// 5s of its context's end, fails the test.
	testkit.Go(t, "Kubernetes.Watch", 5*time.Second, func(ctx context.Context) error { return k.Watch(ctx, rec.update) })
	return &rec
}

// The set follows the slices through the API: adds, readiness flips,
// terminating pods, a second slice, removals; other Services' slices and
// other namespaces are not read.
func TestKubernetesWatch(t *testing.T) {
	ctx := t.Context()
	v4 := discoveryv1.AddressTypeIPv4
	other := slice("other", v4, []discoveryv1.Endpoint{ep("x", "10.9.9.9", true, false)})
	other.Labels[discoveryv1.LabelServiceName] = "admin"
	elsewhere := slice("elsewhere", v4, []discoveryv1.Endpoint{ep("y", "10.8.8.8", true, false)})
	elsewhere.Namespace = "prod"
	a := slice("login-a", v4, []discoveryv1.Endpoint{ep("p1", "10.0.0.1", true, false)})
	client := fake.NewSimpleClientset(a, other, elsewhere)
	log, buf := testLog()
	k, err := NewKubernetes(KubernetesConfig{Namespace: "default", Service: "login", Log: log}, client)
	if err != nil {
		t.Fatal(err)
	}
	rec := watchKubernetes(t, k)
	rec.waitSet(t, 1, []lb.Instance{inst("10.0.0.1:8001", "10.0.0.1:9001")})

	slices := client.DiscoveryV1().EndpointSlices("default")
	apply := func(s *discoveryv1.EndpointSlice) {
		t.Helper()
		if _, err := slices.Update(ctx, s, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// A pod becomes ready: added.
	a.Endpoints = append(a.Endpoints, ep("p2", "10.0.0.2", false, false))
	apply(a)
	a.Endpoints[1] = ep("p2", "10.0.0.2", true, false)
	apply(a)
	rec.waitSet(t, 2, []lb.Instance{inst("10.0.0.1:8001", "10.0.0.1:9001"), inst("10.0.0.2:8001", "10.0.0.2:9001")})
	// A second slice: merged.
	b := slice("login-b", v4, []discoveryv1.Endpoint{ep("p3", "10.0.1.1", true, false)})
	if _, err := slices.Create(ctx, b, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rec.waitSet(t, 3, []lb.Instance{inst("10.0.0.1:8001", "10.0.0.1:9001"), inst("10.0.0.2:8001", "10.0.0.2:9001"), inst("10.0.1.1:8001", "10.0.1.1:9001")})
	// One turns unready, one starts terminating (still ready, as with
	// publishNotReadyAddresses): both leave.
	a.Endpoints[0] = ep("p1", "10.0.0.1", false, false)
	a.Endpoints[1] = ep("p2", "10.0.0.2", true, true)
	apply(a)
	rec.waitSet(t, 4, []lb.Instance{inst("10.0.1.1:8001", "10.0.1.1:9001")})
	// p1 is ready again.
	a.Endpoints[0] = ep("p1", "10.0.0.1", true, false)
	apply(a)
	rec.waitSet(t, 5, []lb.Instance{inst("10.0.0.1:8001", "10.0.0.1:9001"), inst("10.0.1.1:8001", "10.0.1.1:9001")})
	// A slice deleted: its instances leave. The other slices' Service
	// and namespace never counted.
	if err := slices.Delete(ctx, "login-b", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	rec.waitSet(t, 6, []lb.Instance{inst("10.0.0.1:8001", "10.0.0.1:9001")})
	// Every pod gone: after sync, an empty set is the truth.
	a.Endpoints = nil
	apply(a)
	rec.waitSet(t, 7, []lb.Instance{})
	// A change that leaves the set as it was sends nothing.
	a.Labels["unrelated"] = "x"
	apply(a)
	rec.waitSet(t, 7, []lb.Instance{})
	if n := rec.count(); n != 7 {
		t.Errorf("%d sets passed, want 7 (only changes)", n)
	}
	if s := buf.String(); strings.Contains(s, "10.9.9.9") || strings.Contains(s, "10.8.8.8") {
		t.Errorf("another Service's or namespace's slice was read:\n%s", s)
	}
}

// Before the first list succeeds, nothing is passed (never an empty set
// from "not known yet"); once it does, the set, even an empty one. When
// the API server goes away, the last set stays and the failure is
// logged; when it is back, the set follows again.
func TestKubernetesAPIUnreachable(t *testing.T) {
	v4 := discoveryv1.AddressTypeIPv4
	a := slice("login-a", v4, []discoveryv1.Endpoint{ep("p1", "10.0.0.1", true, false)})
	client := fake.NewSimpleClientset(a)
	var down atomic.Bool
	down.Store(true)
	unreachable := errors.New("dial tcp 10.96.0.1:443: connect: connection refused")
	client.PrependReactor("list", "endpointslices", func(k8stesting.Action) (bool, runtime.Object, error) {
		if down.Load() {
			return true, nil, unreachable
		}
		return false, nil, nil
	})
	// The watch is ours, so that the test can cut it as a lost
	// connection would.
	watchers := make(chan *watch.RaceFreeFakeWatcher, 10)
	client.PrependWatchReactor("endpointslices", func(k8stesting.Action) (bool, watch.Interface, error) {
		if down.Load() {
			return true, nil, unreachable
		}
		w := watch.NewRaceFreeFake()
		watchers <- w
		return true, w, nil
	})
	log, buf := testLog()
	k, err := NewKubernetes(KubernetesConfig{Namespace: "default", Service: "login", Log: log}, client)
	if err != nil {
		t.Fatal(err)
	}
	rec := watchKubernetes(t, k)
	testkit.WaitFor(t, 5*time.Second, "the failed list logged", func() bool { return strings.Contains(buf.String(), "connection refused") })
	if n := rec.count(); n != 0 {
		t.Fatalf("%d sets passed before the first list succeeded, want none", n)
	}

	down.Store(false) // the reflector retries after its backoff (about 1s)
	rec.waitSet(t, 1, []lb.Instance{inst("10.0.0.1:8001", "10.0.0.1:9001")})
	var w *watch.RaceFreeFakeWatcher
	select {
	case w = <-watchers:
	case <-time.After(5 * time.Second):
		t.Fatal("no watch started")
	}
	a.ResourceVersion = "2"
	a.Endpoints = append(a.Endpoints, ep("p2", "10.0.0.2", true, false))
	w.Modify(a.DeepCopy())
	rec.waitSet(t, 2, []lb.Instance{inst("10.0.0.1:8001", "10.0.0.1:9001"), inst("10.0.0.2:8001", "10.0.0.2:9001")})

	// The API server goes away: the watch ends, lists fail. The cache,
	// and so the set, stays.
	before := strings.Count(buf.String(), "connection refused")
	down.Store(true)
	w.Stop()
	testkit.WaitFor(t, 10*time.Second, "the outage logged", func() bool { return strings.Count(buf.String(), "connection refused") > before })
	if n, last := rec.count(), rec.last(); n != 2 || len(last) != 2 {
		t.Fatalf("after the outage began: %d sets, the last %v; want the 2 instances kept", n, last)
	}
}

// Watch's informer stops with its context: no goroutine outlives it
// (TestMain's goleak checks the whole package).
func TestKubernetesWatchStops(t *testing.T) {
	client := fake.NewSimpleClientset(slice("login-a", discoveryv1.AddressTypeIPv4, []discoveryv1.Endpoint{ep("p1", "10.0.0.1", true, false)}))
	k, err := NewKubernetes(KubernetesConfig{Namespace: "default", Service: "login"}, client)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		var rec recorder
		stop := testkit.Go(t, "Kubernetes.Watch", 5*time.Second, func(ctx context.Context) error { return k.Watch(ctx, rec.update) })
		rec.waitSet(t, 1, []lb.Instance{inst("10.0.0.1:8001", "10.0.0.1:9001")})
		if err := stop(); err != nil { // stop fails t if Watch did not return within 5s
			t.Fatalf("Watch = %v, want nil", err)
		}
		if t.Failed() {
			t.FailNow()
		}
	}
}

// fuzzClient is the clientset FuzzParseURL's specs are built with; it is
// never contacted (NewKubernetes only keeps it).
var fuzzClient = sync.OnceValue(func() *fake.Clientset { return fake.NewSimpleClientset() })

// checkKubernetesSpec: a kubernetes spec ParseURL accepts builds a source.
func checkKubernetesSpec(t *testing.T, raw string, c KubernetesConfig) {
	if _, err := NewKubernetes(c, fuzzClient()); err != nil {
		t.Fatalf("%q: accepted, but NewKubernetes: %v", raw, err)
	}
}

// testNewKubernetes: New builds a source from a kubeconfig, and says what
// is wrong with a missing one or with in-cluster credentials outside a
// cluster.
func testNewKubernetes(t *testing.T) {
	kubeconfig := t.TempDir() + "/kubeconfig"
	writeInPlace(t, kubeconfig, testKubeconfig)
	s, err := ParseURL("kubernetes://default/login?kubeconfig=" + kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(s, nil); err != nil {
		t.Errorf("New(%+v): %v", s, err)
	}
	s, _ = ParseURL("kubernetes://default/login?kubeconfig=/nonexistent/kubeconfig")
	if _, err := New(s, nil); err == nil || !strings.Contains(err.Error(), "/nonexistent/kubeconfig") {
		t.Errorf("New with a missing kubeconfig = %v, want an error naming it", err)
	}
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	s, _ = ParseURL("kubernetes://default/login")
	if _, err := New(s, nil); err == nil || !strings.Contains(err.Error(), "in-cluster") {
		t.Errorf("New in-cluster outside a cluster = %v, want an error saying so", err)
	}
}

// testKubeconfig is a kubeconfig for a cluster that is never contacted.
const testKubeconfig = `apiVersion: v1
kind: Config
clusters:
- name: test
  cluster: {server: "https://127.0.0.1:1"}
users:
- name: test
  user: {token: not-a-secret}
contexts:
- name: test
  context: {cluster: test, user: test}
current-context: test
`
