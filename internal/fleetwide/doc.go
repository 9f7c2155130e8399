// Package fleetwide makes the replacement guardrails of every host's fleet
// one, through etcd: Guardrails is a fleet.Guardrails whose replacement
// budget is one budget for the whole fleet and whose correlated-failure
// freeze counts the failures of every host against the size of the whole
// fleet (issue #12). Twenty hosts that each lose two instances to a shared
// cause are a correlated failure, though no single host sees one.
//
// # Keys
//
// Under the prefix of the fleet's etcd URL (etcd://HOST:PORT/PREFIX, the
// one its instances register under, see package registry):
//
//	PREFIX/fleet/hosts/HOSTID          {"id","host","size","started"}   under the host's lease
//	PREFIX/fleet/failures/HOSTID/SLOT  {"at","live"}                    under the host's lease
//	PREFIX/fleet/budget                {"spent":[time,...]}             no lease
//
// A host's keys share one lease of Options.Etcd.TTL (default 5 s), kept
// alive while Run runs and revoked when it returns: a host that dies
// (kill -9) leaves the fleet, its failures with it, within the TTL. The
// budget key holds the times of the replacements granted within
// budget.window, whoever took them; it outlives every host.
//
// # Contract
//
//   - Make it with New and call Run once: Run owns the two goroutines
//     (the publisher of this host's keys, and the follower of
//     PREFIX/fleet/) and returns when its context is done, after revoking
//     the host's lease. The etcd client is the caller's: close it after
//     Run has returned. Every method is safe for concurrent use, before,
//     during and after Run.
//   - The fleet.Guardrails methods are called with the fleet's lock held.
//     Fail, Gone, Recover, Update, Failing and Frozen never touch the
//     network: they change or read the local view, and the publisher
//     writes this host's changes to etcd in the background. Request
//     talks to etcd only while the view is connected: one transaction
//     (again after a conflict), all within Options.RequestTimeout
//     (default 500 ms); past it, it decides as without etcd.
//   - Time is injected: every decision takes the fleet's now;
//     Options.Etcd.Now stamps the view's sync and loss times.
//
// # The freeze
//
// Failing is this host's failures (counted as fleet.Freeze counts them:
// live until the instance passes a check, then for freeze.window after it
// is gone) plus every other host's, as published. The fleet is frozen
// while failing > freeze.share × Σ sizes of the hosts in the view, and
// failing ≥ 2. Every host computes the same verdict from the same view;
// the Plan re-evaluates it at each check and tick, so a change elsewhere
// is seen within a check interval plus the watch's delay. Times come from
// each host's clock: keep hosts within a second or so (NTP).
//
// # The budget
//
// budget.max applies to the whole fleet: a count is the fleet's count, a
// percentage is of Σ sizes. Request takes one replacement by a compare-
// and-swap transaction on PREFIX/fleet/budget (compare its mod revision,
// put the pruned list with now appended; on a conflict re-read and
// retry), within Options.RequestTimeout. A grant is never given twice:
// concurrent requests from every host together get at most budget.max
// per budget.window.
//
// The transaction is synchronous, under the fleet's lock, on purpose:
// the Plan asks once per unhealthy instance and acts on the answer at
// once; an asynchronous grant would answer "no budget" first (recording a
// false budget_exhausted event), and spend budget on instances that
// recovered before the grant came back. A replacement is rare by design
// (budgeted); the fleet's loop pauses for one round trip to etcd, at most
// RequestTimeout, when one is due.
//
// # Losing etcd
//
// Losing etcd never stops the fleet, and never blocks it for more than
// RequestTimeout once:
//
//   - The view is kept as last known (hosts and their sizes, their
//     failures, the budget). A remote failure that was live when etcd was
//     lost counts for freeze.window after the loss, then no more: a view
//     that cannot be refreshed does not hold replacements for ever. This
//     host's own failures count as always.
//   - The budget falls back to this host's share of the fleet-wide
//     maximum, floor(max × size / Σ sizes) and at least one, per window,
//     counting what this host took in the window before the loss, and
//     never beyond the last known fleet-wide budget. At least one, so that
//     a host cut off from etcd still replaces a hung instance now and
//     then; the overshoot is bounded by one replacement per host per
//     window. Replacements granted so are written into the budget key
//     once etcd answers again, for every host to count.
//   - The publisher retries with backoff; when the lease is lost (etcd
//     away longer than its TTL) it takes a new one and writes this host's
//     keys again. The follower reads PREFIX/fleet/ afresh once etcd
//     answers (registry.Follow).
package fleetwide
