package fleet

import "time"

// ActionKind names what an Action asks for or reports.
type ActionKind string

// The action kinds. Start, Stop and RollDone ask the caller to act; the
// others report a decision or a change of state, for the caller to log,
// record as an event or count.
const (
	// ActStart: start a process for Slot, named ID. Restart: its
	// predecessor exited unasked (it counts in the restarts metric).
	// Surge: it is a rolling restart's new process. Report the outcome
	// with Started or StartFailed before anything else.
	ActStart ActionKind = "start"
	// ActStop: stop process ID for Reason (SIGTERM, then SIGKILL after
	// stop_timeout). Report its exit with Exited.
	ActStop ActionKind = "stop"
	// ActRollDone: the rolling restart ended; Err is nil on success.
	ActRollDone ActionKind = "roll_done"

	// ActReady: ID's traffic check passed for the first time, After its
	// start.
	ActReady ActionKind = "ready"
	// ActUnhealthy: ID failed its replacement check its threshold of
	// times in a row; Check is the last failure.
	ActUnhealthy ActionKind = "unhealthy"
	// ActRecovered: ID, unhealthy, passed a check.
	ActRecovered ActionKind = "recovered"
	// ActReplaced: ID is stopped for Reason in favour of Successor, or of
	// a successor that failed to start (Err; the slot is started again
	// After the backoff).
	ActReplaced ActionKind = "replaced"
	// ActBudgetExhausted: ID is unhealthy and kept: the replacement budget
	// is spent. Reported once until a replacement goes ahead again.
	ActBudgetExhausted ActionKind = "budget_exhausted"
	// ActFrozen: Failing of the fleet's instances failed together:
	// health-based replacement stops.
	ActFrozen ActionKind = "frozen"
	// ActUnfrozen: the failures cleared (Failing still count); the failures
	// counted so far against every instance are forgiven.
	ActUnfrozen ActionKind = "unfrozen"
	// ActCrashed: ID exited unasked (Detail: its exit status and last
	// output line). Then, one of: Surge, it was a rolling restart's new
	// process and is not restarted; Successor, the slot's rolling restart
	// process took over; PortTaken, it lost the race for a port chosen
	// free and is restarted at once with new ports; otherwise its slot is
	// restarted After the crash backoff.
	ActCrashed ActionKind = "crashed"
	// ActStopped: ID, told to stop for Reason, exited (Detail: its exit
	// status).
	ActStopped ActionKind = "stopped"
	// ActStartFailed: ID could not be started (Err). A slot's serving
	// process is tried again After the backoff; a rolling restart's new
	// one ends the restart.
	ActStartFailed ActionKind = "start_failed"
	// ActScaled: the schedule changed the number of instances kept From
	// to Target; Window is the window that sets it (empty: size), Detail
	// says how. The starts (slots From to Target-1) or the stops (Reason
	// ReasonScaleDown, the newest slot first) follow it in the batch.
	ActScaled ActionKind = "scaled"
)

// Action is one thing the Plan asks its caller to do, or reports. Which
// fields are set depends on Kind (see the kinds); the others are zero.
type Action struct {
	Kind ActionKind
	// Slot is the slot of ID.
	Slot int
	// ID is the process acted on.
	ID string
	// Reason is why ID is stopped or replaced: ReasonLiveness,
	// ReasonTraffic, ReasonRolling, or a description.
	Reason string
	// Successor is the process that replaces ID.
	Successor string
	// Restart and Surge qualify an ActStart; Surge an ActStartFailed;
	// Surge and PortTaken an ActCrashed.
	Restart, Surge, PortTaken bool
	// After is a delay: since the start (ActReady), or until the slot's
	// next start (ActCrashed, ActStartFailed).
	After time.Duration
	// Failing is the number of instances counted as failing (ActFrozen,
	// ActUnfrozen).
	Failing int
	// From, Target and Window describe an ActScaled.
	From, Target int
	Window       string
	// Check is the check that made ID unhealthy.
	Check Probe
	// Detail describes an exit, or an ActScaled's window.
	Detail string
	// Err is why a start failed, or how a rolling restart ended.
	Err error
}

// Exit is how a process's exit looks to the Plan.
type Exit struct {
	// Status is its exit status: "exit status 3", "signal: killed".
	Status string
	// Output is the last line it wrote, if any.
	Output string
	// AddrInUse: its output says a port it was given was taken.
	AddrInUse bool
}
