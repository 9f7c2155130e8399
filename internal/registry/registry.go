// Package registry keeps a fleet's instances in etcd: an instance
// registers itself under a lease (Register), and a load balancer
// discovers the registered set and follows its changes (Discovery, an
// lb.Discovery). What it stores, and the URL and key layout, are package
// membership's, which links no etcd client. Balancers in front of the same fleet register too
// (RegisterLB, PREFIX/lbs/ID) and each takes its share of the fleet's
// capacity by weight (Peers, an lb.Peers); they share the operators'
// decisions, shedding overrides (PREFIX/overrides/DEPENDENCY) and drains
// (PREFIX/drains/INSTANCE), so that a change on any balancer's admin API
// applies on all (Decisions, an lb.Shared).
//
// # Contract
//
//   - The place is an etcd URL, etcd://HOST:PORT[,HOST:PORT...]/PREFIX
//     (ParseURL). An instance is one key, PREFIX/instances/ID, whose value
//     is a Record in JSON, attached to a lease of the registration's TTL
//     (default 5 s) that the instance keeps alive. A key exists while its
//     instance does: an instance that dies (kill -9) leaves the set within
//     its TTL; one that drains revokes its lease first (Deregister).
//   - Register fails at once, with the endpoints named, when etcd cannot
//     grant the lease. Once registered, losing etcd never stops the
//     instance: Registration.Run retries, registering again when etcd
//     comes back, and logs a warning once per outage.
//   - Losing etcd never empties a balancer: Discovery keeps the last set
//     it read, retries with backoff and, once etcd answers again, reads
//     the whole prefix afresh. Connected and LastSync tell whether etcd
//     answers and when the set was last known to be current.
//   - Losing etcd never changes a balancer's share: Peers keeps the last
//     one (taking the whole capacity would multiply the admitted load)
//     and reads PREFIX/lbs/ afresh once etcd answers.
//   - Losing etcd never changes a decision in force: Decisions keeps
//     them, and the changes taken on this balancer meanwhile, which apply
//     here at once and are published once etcd answers, unless another
//     balancer changed the same decision first (it then stands). Every
//     balancer applies what etcd holds: the write of the highest
//     revision.
//   - Registration, Discovery, Peers and Decisions are safe for
//     concurrent use. Each Run or Watch runs until its context is done;
//     the etcd client is the caller's, who closes it after they have
//     returned.
//   - Follow is the watch loop they share (read a prefix, watch it, probe
//     etcd, read afresh after an outage), exported for the other packages
//     that follow a prefix (package fleetwide).
//   - Backoff and time are injected (Options); the I/O is the etcd
//     client's.
package registry

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/spillway-dev/spillway/internal/membership"
)

// The registry's URL, key layout and records are package membership's:
// they are here under their old names for the code that already uses
// them with the etcd client.
type (
	Target   = membership.Target
	URLError = membership.URLError
	Record   = membership.Record
	LBRecord = membership.LBRecord
)

// Scheme is the URL scheme of an etcd registry.
const Scheme = membership.Scheme

// DefaultTTL is a registration's lease TTL when Options.TTL is zero.
const DefaultTTL = membership.DefaultTTL

// ErrURL is what every error of ParseURL is (errors.Is).
var ErrURL = membership.ErrURL

// ParseURL is membership.ParseURL.
func ParseURL(raw string) (Target, error) { return membership.ParseURL(raw) }

// Key returns the key of the instance id under prefix.
func Key(prefix, id string) string { return membership.Key(prefix, id) }

// LBKey returns the key of the balancer id under prefix.
func LBKey(prefix, id string) string { return membership.LBKey(prefix, id) }

func instancesDir(prefix string) string { return membership.InstancesDir(prefix) }

func lbsDir(prefix string) string { return membership.LBsDir(prefix) }

func decodeRecord(key string, value []byte) (Record, error) {
	return membership.DecodeRecord(key, value)
}

// Dial returns an etcd client for t. It does not wait for a connection:
// the first request does (bound it with its context). Close it when done.
// The client's own logs are discarded; Register and Discovery log what
// matters through their slog logger.
//
// The connection to etcd is retried every second at most (gRPC's default
// backoff grows to 2 minutes): after an outage the client is back within
// about a second of etcd, so a balancer resyncs at once and an instance's
// keep-alive reaches its lease before the TTL etcd gives it back on
// restart runs out (with a cap of 2 s, a lease of 2 s could expire first:
// CI caught an instance dropping out of discovery after an etcd restart).
func Dial(t Target) (*clientv3.Client, error) {
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:            t.Endpoints,
		DialTimeout:          2 * time.Second,
		DialKeepAliveTime:    5 * time.Second,
		DialKeepAliveTimeout: 2 * time.Second,
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 250 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: 2 * time.Second,
		})},
		Logger: zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("etcd client for %s: %w", strings.Join(t.Endpoints, ","), err)
	}
	return cli, nil
}

// discard is the logger of a zero Options.
var discard = slog.New(slog.DiscardHandler)
