#!/usr/bin/env bash
# Measures one login instance's logins/s and latency with wrk, against a real
# `spillway backend-sim`, all on 127.0.0.1. See docs/BENCHMARKS.md.
#
# Usage: ./scripts/bench-login.sh        (from anywhere; needs go, wrk, curl, taskset)
#
# Every run starts a fresh backend-sim and login instance pinned to one CPU
# (LOGIN_CPU), drives them with wrk pinned to another (WRK_CPU), records
# VmRSS/VmHWM of the login process after the run, and stops both. Runs are
# interleaved: for each repeat, every (backend latency, connections) pair
# once. Bounded in time: about REPEATS x configs x (DURATION + WARMUP + 5s),
# each wrk capped by timeout(1); a trap stops every process this script
# started, by PID, on any exit.
#
# Environment (defaults in brackets):
#   REPEATS [3]  DURATION [10s]  WARMUP [2s]  LATENCIES ["0ms 20ms"]
#   CONNS ["32 128"]  LIMIT [64: admission, passed to --limit]
#   WRK_CPU [0]  LOGIN_CPU [1]  BIN [/tmp/spillway]  OUT [a new temp dir]
#   BACKEND_ADDR [127.0.0.1:19100]  LOGIN_ADDR [127.0.0.1:18101]
#   HEALTH_ADDR [127.0.0.1:19101]
set -euo pipefail
cd "$(dirname "$0")/.."

REPEATS=${REPEATS:-3}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
LATENCIES=${LATENCIES:-"0ms 20ms"}
CONNS=${CONNS:-"32 128"}
LIMIT=${LIMIT:-64}
WRK_CPU=${WRK_CPU:-0}
LOGIN_CPU=${LOGIN_CPU:-1}
BIN=${BIN:-/tmp/spillway}
OUT=${OUT:-$(mktemp -d /tmp/bench-login.XXXXXX)}
mkdir -p "$OUT"
BACKEND_ADDR=${BACKEND_ADDR:-127.0.0.1:19100}
LOGIN_ADDR=${LOGIN_ADDR:-127.0.0.1:18101}
HEALTH_ADDR=${HEALTH_ADDR:-127.0.0.1:19101}

for a in "$BACKEND_ADDR" "$LOGIN_ADDR" "$HEALTH_ADDR"; do
	case $a in 127.0.0.1:*) ;; *) echo "bench-login: $a: only 127.0.0.1 addresses are allowed" >&2; exit 2 ;; esac
done
for t in go wrk curl taskset timeout; do
	command -v "$t" >/dev/null || { echo "bench-login: $t not found (wrk: apt-get install wrk)" >&2; exit 2; }
done

# shellcheck source=scripts/pids.sh
. scripts/pids.sh # pids, stop_all (the working directory is the repository root)
trap stop_all EXIT
trap 'exit 130' INT TERM

echo "== build $BIN"
CGO_ENABLED=0 go build -o "$BIN" ./cmd/spillway

cat >"$OUT/login.lua" <<'EOF'
wrk.method = "POST"
wrk.body = '{"ticket":"valid-bench"}'
wrk.headers["Content-Type"] = "application/json"
EOF

# idle_pct: the machine's idle CPU share over the next second, in percent.
idle_pct() {
	local a b
	a=($(head -1 /proc/stat)); sleep 1; b=($(head -1 /proc/stat))
	awk -v i=$((b[4] + b[5] - a[4] - a[5])) \
		-v t=$((b[1] + b[2] + b[3] + b[4] + b[5] + b[6] + b[7] + b[8] - a[1] - a[2] - a[3] - a[4] - a[5] - a[6] - a[7] - a[8])) \
		'BEGIN {printf "%.0f", 100 * i / t}'
}

# wait_ready URL: poll until URL answers 200, at most 10s.
wait_ready() {
	for _ in $(seq 100); do
		if [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$1")" = 200 ]; then return 0; fi
		sleep 0.1
	done
	echo "bench-login: $1 not ready within 10s" >&2
	return 1
}

# to_ms: a wrk duration ("812.00us", "20.41ms", "1.02s") in milliseconds.
to_ms() {
	awk -v d="$1" 'BEGIN {
		if (d ~ /us$/) { sub(/us$/, "", d); printf "%.3f", d / 1000 }
		else if (d ~ /ms$/) { sub(/ms$/, "", d); printf "%.3f", d }
		else if (d ~ /m$/) { sub(/m$/, "", d); printf "%.3f", d * 60000 }
		else { sub(/s$/, "", d); printf "%.3f", d * 1000 }
	}'
}

{
	echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
	echo "kernel: $(uname -r)"
	echo "go: $(go version)"
	echo "wrk: $(wrk -v 2>&1 | head -1)"
	echo "settings: repeats=$REPEATS duration=$DURATION warmup=$WARMUP limit=$LIMIT wrk_cpu=$WRK_CPU login_cpu=$LOGIN_CPU"
} | tee "$OUT/machine.txt"

# Anything else running skews every figure: say so before and after.
idle=$(idle_pct)
echo "idle before the runs: $idle%"
if [ "$idle" -lt 90 ]; then
	echo "WARNING: the machine is busy (idle $idle%); other processes will skew the figures" >&2
fi

RESULTS=$OUT/results.tsv
printf 'repeat\tlatency\tconns\trequests\tnon2xx\tseconds\tlogins_per_s\trequests_per_s\tp50_ms\tp99_ms\trss_kb\thwm_kb\n' >"$RESULTS"

run_one() { # repeat latency conns
	local rep=$1 lat=$2 c=$3 tag="r$1-$2-c$3"
	taskset -c "$LOGIN_CPU" "$BIN" backend-sim --listen "$BACKEND_ADDR" --latency "$lat" \
		2>"$OUT/$tag.backend.log" &
	pids+=($!)
	taskset -c "$LOGIN_CPU" "$BIN" login --dev --rate-limit 0 --limit "$LIMIT" --log-level warn \
		--listen "$LOGIN_ADDR" --health-listen "$HEALTH_ADDR" --backend "http://$BACKEND_ADDR" \
		2>"$OUT/$tag.login.log" &
	local login=$!
	pids+=("$login")
	wait_ready "http://$BACKEND_ADDR/healthz"
	wait_ready "http://$HEALTH_ADDR/readyz"
	local idle
	idle=$(idle_pct)
	[ "$idle" -ge 90 ] || echo "WARNING: $tag: machine idle only $idle% before the run" >&2

	local wrk=(taskset -c "$WRK_CPU" timeout 60 wrk -t1 -c "$c" -s "$OUT/login.lua" --timeout 5s)
	"${wrk[@]}" -d "$WARMUP" "http://$LOGIN_ADDR/v1/login" >/dev/null
	"${wrk[@]}" -d "$DURATION" --latency "http://$LOGIN_ADDR/v1/login" >"$OUT/$tag.wrk.txt"
	local rss hwm
	rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$login/status")
	hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$login/status")
	stop_all

	local f=$OUT/$tag.wrk.txt reqs secs non2xx p50 p99
	reqs=$(awk '/requests in/ {print $1}' "$f")
	secs=$(awk '/requests in/ {s=$4; sub(/s,$/, "", s); print s}' "$f")
	non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$f")
	non2xx=${non2xx:-0}
	p50=$(to_ms "$(awk '$1 == "50%" {print $2}' "$f")")
	p99=$(to_ms "$(awk '$1 == "99%" {print $2}' "$f")")
	if grep -q 'Socket errors' "$f"; then echo "note: $tag: $(grep 'Socket errors' "$f")"; fi
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%.0f\t%.0f\t%s\t%s\t%s\t%s\n' "$rep" "$lat" "$c" "$reqs" "$non2xx" "$secs" \
		"$(awk -v r="$reqs" -v n="$non2xx" -v s="$secs" 'BEGIN {print (r - n) / s}')" \
		"$(awk -v r="$reqs" -v s="$secs" 'BEGIN {print r / s}')" \
		"$p50" "$p99" "$rss" "$hwm" | tee -a "$RESULTS"
}

echo "== runs (repeat, latency, conns, requests, non2xx, seconds, logins/s, requests/s, p50 ms, p99 ms, VmRSS kB, VmHWM kB)"
for rep in $(seq "$REPEATS"); do
	for lat in $LATENCIES; do
		for c in $CONNS; do
			run_one "$rep" "$lat" "$c"
		done
	done
done

# Median and range per (latency, conns) over the repeats.
echo
echo "== summary: median [min-max] over $REPEATS runs"
printf '| backend latency | connections | logins/s (2xx) | p50 ms | p99 ms | non-2xx per run | login VmRSS MiB |\n'
printf '|---|---|---|---|---|---|---|\n'
for lat in $LATENCIES; do
	for c in $CONNS; do
		awk -F'\t' -v lat="$lat" -v c="$c" '
			function med(col,   n, i, j, t, v) {
				n = 0
				for (i = 1; i <= nr; i++) v[++n] = row[i, col]
				for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] + 0 < v[i] + 0) { t = v[i]; v[i] = v[j]; v[j] = t }
				lo = v[1]; hi = v[n]
				return (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
			}
			NR > 1 && $2 == lat && $3 == c { nr++; for (k = 1; k <= NF; k++) row[nr, k] = $k }
			END {
				if (!nr) exit
				m = med(7); s = sprintf("| %s | %s | %.0f [%.0f-%.0f]", lat, c, m, lo, hi)
				m = med(9); s = s sprintf(" | %.2f [%.2f-%.2f]", m, lo, hi)
				m = med(10); s = s sprintf(" | %.2f [%.2f-%.2f]", m, lo, hi)
				m = med(5); s = s sprintf(" | %.0f [%.0f-%.0f]", m, lo, hi)
				m = med(11); s = s sprintf(" | %.1f [%.1f-%.1f] |", m / 1024, lo / 1024, hi / 1024)
				print s
			}' "$RESULTS"
	done
done
echo
echo "raw wrk output and logs: $OUT"
