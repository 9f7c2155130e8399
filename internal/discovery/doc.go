// Package discovery supplies the balancer's instances from outside
// spillway's own configuration: File reads a YAML file that an
// orchestrator rewrites, SRV resolves a DNS SRV name (a Consul service, a
// Kubernetes headless service), Kubernetes watches a Service's
// EndpointSlices. All implement lb.Discovery; ParseURL reads the URL that
// names one (file:///path, dns+srv://name, kubernetes://namespace/service)
// and New builds it.
//
// # Contract
//
//   - Sets are complete, never deltas, and are passed to update only when
//     they differ from the last one passed (the first always is).
//   - A source never gives up its set on a failure: an unreadable or
//     invalid file, a deleted file, a failed or empty DNS answer keeps the
//     last good set, and the failure is logged (once while it stays the
//     same, with the line for a file). A file that validly lists no
//     instances (`instances: []`) is an empty set; DNS cannot say that
//     reliably, so SRV never gives an empty set. The Kubernetes API can:
//     once its informer has synced, a Service without a ready endpoint is
//     an empty set; before that, and while the API server cannot be
//     reached, the last set stays (none before the first).
//   - A set is refused whole, never in part, when an entry is invalid
//     (lb.CheckInstance) or repeats a service address: the balancer would
//     skip such entries one by one, which turns a typo into a shrinking
//     fleet. Merged sources keep one of each instead: an SRV target listed
//     twice, an endpoint that briefly sits in two EndpointSlices.
//   - NewFile, NewSRV and NewKubernetes validate their configuration;
//     NewFile reads the file once, so a missing or invalid file is an
//     error at start. The values they return hold no goroutine and are
//     safe for concurrent use; each Watch owns what it starts (a file
//     watcher, timers, an informer) and stops it before it returns, which
//     it does, with nil, once its context is done.
//   - Time is injected where a test needs it (SRVConfig.After); the
//     file's change events are real, so File is tested against real files;
//     NewKubernetes takes its client, so Kubernetes is tested against
//     client-go's fake clientset.
package discovery
