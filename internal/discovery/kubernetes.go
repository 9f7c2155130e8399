//go:build kubernetes

package discovery

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/spillway-dev/spillway/internal/field"
	"github.com/spillway-dev/spillway/internal/lb"
)

// Kubernetes is a Discovery that follows the EndpointSlices of a Service
// through a client-go informer (list, then watch), limited to the
// Service's namespace and to the slices labelled
// kubernetes.io/service-name=SERVICE. The slices are merged into one
// set:
//
//   - An endpoint is an instance when it is ready (conditions.ready true,
//     or nil, which the API says means true) and not terminating. A
//     terminating endpoint leaves the set even when it is still ready
//     (a Service with publishNotReadyAddresses keeps it so): the pod is
//     going away, and the balancer drains it (its requests in flight
//     finish) while the pod's preStop and drain_delay keep it serving.
//   - Its service address is its first address (the API lets consumers
//     use only the first; the others are fungible) with the slice's port
//     named "http"; its health address is the same address with the port
//     named "health", or, when the slice has no "health" port, the service
//     address itself (the 2018 configuration: checks share the service
//     port). A slice without an "http" port, or of the FQDN address type,
//     is skipped and logged.
//   - A pod on both IPv4 and IPv6 (a dual-stack Service has a slice of each
//     family) is one instance, on IPv4, as SRV does; endpoints are told
//     apart by their targetRef's UID, or by address when they have none.
//   - The set has no duplicates (an endpoint may briefly be in two slices
//     while the controller moves it) and is sorted by service address.
//
// Until the informer has synced (its first list succeeded), Watch passes
// no set: "not known yet" is never an empty set. After that, the API is
// authoritative, so a Service with no ready endpoint (or no EndpointSlice
// at all, logged, as a misspelled name gives) is an empty set, and the
// balancer answers 503 until a pod is ready. When the API server cannot
// be reached, the informer keeps its cache and retries with backoff, and
// the last set stays; the failure is logged once. A set that an invalid
// address or more than lb.MaxInstances would make is refused whole and
// the last set stays.
type Kubernetes struct {
	c      KubernetesConfig
	client kubernetes.Interface
}

var _ lb.Discovery = (*Kubernetes)(nil)

// KubernetesBuilt reports whether this binary can follow a Kubernetes
// Service (built with the tag kubernetes).
const KubernetesBuilt = true

// NewKubernetes validates c and returns its source, which lists and
// watches through client (tests pass k8s.io/client-go/kubernetes/fake's
// clientset). It contacts nothing yet.
func NewKubernetes(c KubernetesConfig, client kubernetes.Interface) (*Kubernetes, error) {
	err := errors.Join(checkNamespace("namespace", c.Namespace), checkServiceName("service", c.Service))
	if c.Kubeconfig != "" && !filepath.IsAbs(c.Kubeconfig) {
		err = errors.Join(err, field.New("kubeconfig", c.Kubeconfig, "must be an absolute path"))
	}
	if client == nil {
		err = errors.Join(err, errors.New("no Kubernetes client"))
	}
	if err != nil {
		return nil, fmt.Errorf("discovery kubernetes %s/%s: %w", c.Namespace, c.Service, err)
	}
	c.Log = orDiscard(c.Log).With("discovery", "kubernetes", "namespace", c.Namespace, "service", c.Service)
	return &Kubernetes{c: c, client: client}, nil
}

// newKubernetesClient builds a clientset from the kubeconfig file at path,
// or from the pod's service account when path is "".
func newKubernetesClient(path string) (kubernetes.Interface, error) {
	var (
		cfg *rest.Config
		err error
	)
	if path == "" {
		cfg, err = rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("in-cluster configuration (outside a cluster, give ?kubeconfig=/path): %w", err)
		}
	} else {
		cfg, err = clientcmd.BuildConfigFromFlags("", path)
		if err != nil {
			return nil, fmt.Errorf("kubeconfig %s: %w", path, err)
		}
	}
	cfg.UserAgent = "spillway-lb"
	return kubernetes.NewForConfig(cfg)
}

// Watch implements lb.Discovery: it starts an informer on the Service's
// EndpointSlices, waits for its first list, then passes the set and every
// set that differs from the last, after each change, until ctx is done.
// The informer's goroutines have stopped when Watch returns.
func (k *Kubernetes) Watch(ctx context.Context, update func([]lb.Instance)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	selector := labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: k.c.Service})
	factory := informers.NewSharedInformerFactoryWithOptions(k.client, 0, // no resync: the watch says what changed
		informers.WithNamespace(k.c.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.LabelSelector = selector.String()
		}))
	slicesInformer := factory.Discovery().V1().EndpointSlices()
	informer := slicesInformer.Informer()
	lister := slicesInformer.Lister().EndpointSlices(k.c.Namespace)

	// The informer's goroutines signal; this one reads the cache, which
	// is updated before handlers are called, and publishes.
	changed := make(chan struct{}, 1)
	signal := func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	failures := make(chan error, 1) // the latest failure; older ones are dropped
	if _, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { signal() },
		UpdateFunc: func(any, any) { signal() },
		DeleteFunc: func(any) { signal() },
	}); err != nil {
		return fmt.Errorf("discovery kubernetes: %w", err)
	}
	if err := informer.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
		if benignWatchError(err) {
			return
		}
		for {
			select {
			case failures <- err:
				return
			default:
			}
			select {
			case <-failures:
			default:
			}
		}
	}); err != nil {
		return fmt.Errorf("discovery kubernetes: %w", err)
	}
	factory.StartWithContext(ctx)
	defer func() {
		cancel()
		factory.Shutdown() // waits for the informer's goroutines
	}()

	p := &publisher{update: update, log: k.c.Log}
	syncedCh := informer.HasSyncedChecker().Done() // nil once synced
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-syncedCh:
			syncedCh = nil
		case <-changed:
		case err := <-failures:
			p.fail(fmt.Errorf("list or watch EndpointSlices (the last set stays): %w", err))
			continue
		}
		if syncedCh != nil {
			continue // never a set from "not known yet"
		}
		// The server filters by label too; this holds for a client that
		// does not. A cache's lister does not fail.
		objs, err := lister.List(selector)
		if err != nil {
			p.fail(fmt.Errorf("list EndpointSlices from the cache: %w", err))
			continue
		}
		insts, skipped, err := KubernetesInstances(objs)
		p.skipped("EndpointSlice entries", skipped)
		if err != nil {
			p.fail(err)
			continue
		}
		if len(objs) == 0 && (!p.started || len(p.sent) > 0) {
			k.c.Log.Warn("the Service has no EndpointSlice (no such Service, or no selector?); the set is empty")
		}
		p.set(insts)
	}
}

// benignWatchError reports whether a reflector's error is routine: a watch
// the server closed, or a resource version too old, after which the
// informer lists again.
func benignWatchError(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		apierrors.IsResourceExpired(err) || apierrors.IsGone(err)
}

// KubernetesInstances merges a Service's EndpointSlices into a set, as
// Kubernetes describes: the set, a note for each slice or endpoint
// skipped, and an error when the set must be refused (an invalid
// address, more than lb.MaxInstances).
func KubernetesInstances(objs []*discoveryv1.EndpointSlice) (insts []lb.Instance, skipped []string, err error) {
	objs = slices.Clone(objs)
	slices.SortFunc(objs, func(a, b *discoveryv1.EndpointSlice) int { return strings.Compare(a.Name, b.Name) })
	type candidate struct {
		addr netip.Addr
		inst lb.Instance
	}
	byKey := map[string]candidate{} // targetRef UID, or address → the endpoint's instance
	for _, s := range objs {
		if s.AddressType != discoveryv1.AddressTypeIPv4 && s.AddressType != discoveryv1.AddressTypeIPv6 {
			skipped = append(skipped, fmt.Sprintf("slice %s: address type %s (want IPv4 or IPv6)", s.Name, s.AddressType))
			continue
		}
		svcPort, ok := namedPort(s.Ports, KubernetesServicePort)
		if !ok {
			if len(s.Endpoints) > 0 {
				skipped = append(skipped, fmt.Sprintf("slice %s: no port named %q", s.Name, KubernetesServicePort))
			}
			continue
		}
		healthPort, ok := namedPort(s.Ports, KubernetesHealthPort)
		if !ok {
			healthPort = svcPort
		}
		for _, e := range s.Endpoints {
			if !usable(e.Conditions) || len(e.Addresses) == 0 {
				continue
			}
			addr, err := netip.ParseAddr(e.Addresses[0])
			if err != nil || addr.Zone() != "" {
				return nil, skipped, fmt.Errorf("slice %s: endpoint address %q: not an IP address", s.Name, e.Addresses[0])
			}
			addr = addr.Unmap()
			in := lb.Instance{
				Service: net.JoinHostPort(addr.String(), strconv.Itoa(svcPort)),
				Health:  net.JoinHostPort(addr.String(), strconv.Itoa(healthPort)),
			}
			if err := lb.CheckInstance(in); err != nil {
				return nil, skipped, fmt.Errorf("slice %s: %w", s.Name, err)
			}
			key := in.Service
			if e.TargetRef != nil && e.TargetRef.UID != "" {
				key = "uid:" + string(e.TargetRef.UID)
			}
			old, seen := byKey[key]
			switch {
			case !seen:
			case old.addr.Is4() && !addr.Is4(): // keep IPv4
				continue
			case old.addr.Is4() == addr.Is4() && cmpAddr(old.inst.Service, in.Service) <= 0: // the first, in a stable order
				continue
			}
			byKey[key] = candidate{addr: addr, inst: in}
		}
	}
	seen := map[string]bool{}
	for _, c := range byKey {
		if !seen[c.inst.Service] {
			seen[c.inst.Service] = true
			insts = append(insts, c.inst)
		}
	}
	// Two keys with one service address (an endpoint with and without
	// its targetRef) keep whichever health address sorts first.
	slices.SortFunc(insts, func(a, b lb.Instance) int {
		if c := cmpAddr(a.Service, b.Service); c != 0 {
			return c
		}
		return cmpAddr(a.Health, b.Health)
	})
	insts = slices.CompactFunc(insts, func(a, b lb.Instance) bool { return a.Service == b.Service })
	if len(insts) > lb.MaxInstances {
		return nil, skipped, fmt.Errorf("%d instances, more than %d", len(insts), lb.MaxInstances)
	}
	if insts == nil {
		insts = []lb.Instance{}
	}
	return insts, skipped, nil
}

// usable reports whether an endpoint belongs in the set: ready (nil means
// ready) and not terminating (nil means not).
func usable(c discoveryv1.EndpointConditions) bool {
	ready := c.Ready == nil || *c.Ready
	terminating := c.Terminating != nil && *c.Terminating
	return ready && !terminating
}

// namedPort returns the number of the port called name.
func namedPort(ports []discoveryv1.EndpointPort, name string) (int, bool) {
	for _, p := range ports {
		if p.Name != nil && *p.Name == name && p.Port != nil && *p.Port > 0 && *p.Port <= 65535 {
			return int(*p.Port), true
		}
	}
	return 0, false
}

// newKubernetesSource builds the source c describes, with a client from
// its kubeconfig or the pod's service account.
func newKubernetesSource(c KubernetesConfig) (lb.Discovery, error) {
	client, err := newKubernetesClient(c.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("discovery kubernetes %s/%s: %w", c.Namespace, c.Service, err)
	}
	return NewKubernetes(c, client)
}
