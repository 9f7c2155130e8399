#!/usr/bin/env bash
# The recovery race (issue 11): the same backend outages (hang, error,
# slow, a recovery storm) against `spillway lb` and against HAProxy composed
# as the seed's team planned it, each in front of the same three
# `spillway login` instances and one `spillway backend-sim`, in one
# sitting; prints a table per scenario and writes it, with every trial's
# summary and logs, to the output directory. See internal/racebench.
#
# Usage (from anywhere; needs go; installs Debian's haproxy if missing):
#   ./scripts/bench-recovery.sh                  # 3 runs of all four scenarios, ~15 min
#   ./scripts/bench-recovery.sh -runs 1          # ~5 min
#   ./scripts/bench-recovery.sh -scenarios storm -runs 5 -out /tmp/storm
#   ./scripts/bench-recovery.sh -scenarios hang -runs 1 -doors controller,spillway
#                                                # issue 13's acceptance run: HAProxy driven by
#                                                # spillway controller, ~1 min (docs/HAPROXY.md)
# Flags (passed to racebench): -runs N [3], -scenarios LIST [hang,error,slow,storm],
#   -rate LOGINS_PER_S [300], -out DIR [bench-recovery-<date>], -raw (keep every attempt),
#   -doors LIST [spillway,haproxy; add controller for HAProxy + spillway controller].
# Only 127.0.0.1 is used; every process is stopped by PID at the end of its
# trial, also on Ctrl-C.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export CGO_ENABLED=0 # the binaries, and racebench itself

if ! command -v haproxy >/dev/null 2>&1; then
	echo "== install haproxy (Debian's package)" >&2
	sudo=
	if [ "$(id -u)" != 0 ]; then sudo=sudo; fi
	$sudo apt-get update -qq
	$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >/dev/null
fi
# (A system haproxy the package may have started is left alone: the race
# runs its own, in the foreground, on ports of its choosing.)

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "== build spillway" >&2
CGO_ENABLED=0 go build -o "$tmp/spillway" ./cmd/spillway

# The command line as typed, for the report.
RACEBENCH_COMMAND=$(printf '%q ' "$0" "$@")
export RACEBENCH_COMMAND=${RACEBENCH_COMMAND% }
# Not exec: the trap above removes the build once racebench is done (it
# stops its own processes on Ctrl-C, which reaches it directly).
go run ./internal/racebench -spillway "$tmp/spillway" -haproxy "$(command -v haproxy)" "$@"
