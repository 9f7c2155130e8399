# shellcheck shell=bash
# Sourced by the bench scripts: the processes a script starts, stopped by
# PID. A script appends each process it starts in the background to pids
# (pids+=($!)) and traps stop_all on EXIT.

# pids: the processes this script started and has not stopped yet.
pids=()

# stop_all: SIGTERM to every process in pids, then up to 5 s each to exit
# (a graceful shutdown drains for up to a few seconds), then SIGKILL; each
# is reaped, and pids emptied.
stop_all() {
	local p
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do
		for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	pids=()
}
