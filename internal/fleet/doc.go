// Package fleet supervises a group of instance processes (by default this
// binary's own `login` subcommand): it starts Size of them (more while a
// schedule window asks for more), each on free ports chosen at its start,
// replaces them on liveness only, and announces the set to the load
// balancer as instances come and go.
//
// # Contract
//
//   - Build a Fleet with New; the zero Fleet is not usable. Call Run once:
//     it owns every goroutine and process the fleet starts and returns only
//     after all processes have exited and all goroutines have ended. Every
//     method is safe for concurrent use, before, during and after Run.
//   - Instances and Watch (the Source interface) give the announced set:
//     an instance is announced as soon as its process starts and withdrawn
//     as soon as it is told to stop; it becomes routable only through the
//     load balancer's own health checks and slow start.
//   - Status, Schedule, Events and Frozen are for dashboards; the metrics
//     spillway_fleet_instances, spillway_fleet_replacements_total{reason},
//     spillway_fleet_frozen, spillway_fleet_restarts_total and
//     spillway_fleet_target_instances go to the injected Registerer.
//
// # How it decides
//
// The decisions are a Plan: a pure state machine that takes observations
// (a start's outcome, a check result, an exit, a tick) and operator
// commands (boot, rolling restart, shutdown) with an explicit now and
// answers with Actions (start, stop, and what was decided: replaced,
// frozen, crashed, ...), built from plain policies (Checks, Backoff, and
// the Guardrails: Freeze and Budget). The Fleet around it only runs
// processes and HTTP checks, feeds the plan and applies its actions as
// processes, logs, events and metrics (DESIGN.md, principle 2). The
// Guardrails are an interface: the seam where the budget and the freeze
// become fleet-wide.
//
//   - Grace: for Config.Grace after a start (default 10s), failed checks
//     are not counted. Checks still run, so readiness is seen at once.
//   - Replacement on liveness only (default): an instance is replaced when
//     its liveness check (GET /livez on its health port) fails
//     check.unhealthy_threshold times in a row (default 3 checks every 2s,
//     each with a 1s timeout). /livez reports on the process alone, so a
//     dependency outage replaces nothing. The successor is started before
//     the failed instance is stopped.
//   - replace_on: traffic replaces on the traffic check (/readyz, on the
//     service port in the 2018 configuration): the incident's failure mode.
//     An overloaded, draining or (with deep checks) dependency-starved
//     instance looks dead, is replaced, and its successor inherits the same
//     flood and is replaced in turn. It exists for the drill.
//   - Budget: at most budget.max health-based replacements per sliding
//     budget.window (default a quarter of Size, at least 1, per minute).
//     Beyond it the unhealthy instance is kept and a budget_exhausted event
//     is recorded.
//   - Freeze: when more than freeze.share of the fleet (default 50%, and at
//     least two instances) has failed within freeze.window (default 1m),
//     the cause is shared: nothing is replaced, a frozen event is recorded,
//     spillway_fleet_frozen is 1, and checks go on. An instance counts as
//     failing from its first failed check after grace (not from its
//     threshold, so instances failing together freeze the fleet before the
//     first of them is replaced) until it passes a check, and for the
//     window after it is gone (replaced or exited) unless the slot's next
//     instance passes a check first. The fleet unfreezes as soon as the
//     count drops to the share or below, and then forgives the failures
//     counted so far: an instance still failing (the shared cause's
//     straggler) needs a full fresh threshold before it is replaced.
//   - Exits: a process that exits unasked is a real failure: it counts
//     towards the freeze (once per slot, so one crash-looping slot is one
//     failure), but its restart is never held by the freeze or charged to
//     the budget: there is no live process left to protect. Restarts are
//     spaced by an exponential backoff per slot (1s doubling to 30s; reset
//     after a run of 1m). An exit that reports "address already in use"
//     before the instance was ever ready is the race on a port chosen free;
//     it is restarted at once with new ports, up to three times.
//   - Stopping: SIGTERM to the instance's process group, SIGKILL to the
//     group after stop_timeout (default 15s: the login instance's 2s drain
//     delay plus its 10s shutdown timeout, with margin).
//   - Rolling restart: one slot at a time, new instance first, old one
//     stopped only once the new one's /readyz answers 200, and drained
//     before the next slot: capacity never drops and the surge is one.
//   - Schedule (pre-warming before known peaks): each window of
//     Config.Schedule (a five-field cron start read in its IANA time zone,
//     a duration, the instances it needs on this host or over the fleet)
//     raises the number of instances kept from schedule_lead (default 2m)
//     before it opens until it closes: the fleet keeps the largest of size
//     and every open window's need. Extra instances are slots of their
//     own, started, announced, checked and replaced like the others; when
//     the windows close they are stopped gracefully, the newest first,
//     never below size and never during a rolling restart (the scale-down
//     waits for it to end). A fleet-scope window's instances are split
//     over the live hosts (Options.Hosts): this host keeps ceil(instances
//     / hosts), a share that does not fall while the window is open. The
//     budget's and the freeze's shares are of the current target. The
//     Fleet wakes at each lead and close (Plan.Next), without polling.
//
// # Processes
//
// Each instance runs in its own process group (Setpgid), so a stop reaches
// whatever it starts, and whatever is left of the group when the instance
// exits is killed. On Linux it also gets Pdeathsig = SIGKILL: if the
// fleet's process dies, even by SIGKILL, the kernel kills the instances.
// Pdeathsig is tied to the thread that forked, so every start happens on
// one dedicated, locked OS thread that lives as long as Run. Other Unix
// systems have no such signal: there, instances outlive a killed fleet.
// On systems without process groups a stop is a kill.
package fleet
