#!/usr/bin/env bash
# Goodput under overload (issue 16): `spillway lb` against HAProxy, each in
# front of the same fleet of `spillway backend-sim` instances that have a
# capacity, under open-loop load at 1x, 2x, 5x and 10x the fleet's
# capacity. Per proxy and multiple: the offered req/s, the goodput (2xx/s)
# and its share of the capacity, p50/p99 of the 2xx answers, the 503s per
# second and their p99 (how fast the refusal is), errors and client
# timeouts, and what the backends turned away themselves. Medians over
# rounds, one Markdown table at the end. See docs/BENCHMARKS.md, "Goodput
# under overload".
#
# Usage (from anywhere; needs go, haproxy, curl, jq, taskset):
#   ./scripts/bench-overload.sh                      # 3 rounds, about 6 min
#   ROUNDS=1 MULTIPLES="1 10" ./scripts/bench-overload.sh
#
# The fleet. INSTANCES backend-sims, each `--capacity CAPACITY --latency
# LATENCY_MS ms`: CAPACITY workers, so it serves CAPACITY / LATENCY calls
# a second at most, and the fleet INSTANCES x CAPACITY / LATENCY (3 x 4 /
# 60 ms = 200 req/s by default, so that 10x, 2000 req/s, is well within
# what one generator on one core of this 2-core VM sends). Calls beyond
# the workers wait in the backend's own FIFO queue (BE_QUEUE_SIZE, at
# most BE_QUEUE_TIMEOUT), as in a thread-pool server: latency grows with
# the queue, and a call that finds it full, or waits too long, gets a
# 503. The load is POST /v1/validate with a valid ticket (the call that
# takes a worker); both proxies check /healthz, which backend-sim answers
# beside its pool.
#
# spillway lb, configured as someone who knows each instance's capacity
# would ($OUT/lb.yaml): backend-sim publishes no spillway /health report,
# so the checks use /healthz (ready_path), no report is fetched
# (report_path ""), and admission.unknown_instance_limit = CAPACITY gives
# the balancer each instance's concurrency: the edge bound is INSTANCES x
# CAPACITY requests in flight, LB_QUEUE_SIZE more may wait at most
# QUEUE_TIMEOUT, the rest get a fast 503 overloaded. Every other setting
# is its default (slow start 10 s, outlier ejection, retry budget, ...).
# That setting bounds the edge, not each instance: the balancer caps an
# instance at its limit only when the instance reports one. LB_LIMIT=report
# gives it that instead: a stub (`overload -serve-report`, on REPORT_ADDR)
# answers every instance's checks with /readyz 200 and a /health report of
# limit CAPACITY (so the checks no longer look at the backends themselves).
#
# HAProxy, configured as HAProxy users do for this ($OUT/haproxy.cfg):
# `balance leastconn`, every server `maxconn CAPACITY maxqueue
# HAPROXY_MAXQUEUE`, `timeout queue QUEUE_TIMEOUT` in the backend, checks
# on /healthz (inter 2s fall 3 rise 2, spillway's defaults), keep-alive on
# both sides, `http-reuse always`, nbthread 1. A request that waits
# `timeout queue` gets HAProxy's 503. (maxqueue bounds each server's own
# queue; requests that find every server and its queue full wait in the
# backend's queue, which only `timeout queue` bounds.)
#
# The load. scripts/overload (internal/loadgen, open loop: request i
# starts at start + i/rate whatever the earlier ones did) at MULTIPLES x
# the fleet's capacity, WARMUP then DURATION, client timeout TIMEOUT; only
# requests started in DURATION count. Each round starts the fleet and both
# proxies afresh, waits until the lb's slow start is over (its edge bound
# at INSTANCES x CAPACITY), then runs every multiple against both proxies
# in turn, the first proxy alternating round by round; SETTLE seconds
# between two runs let the queues empty. ROUNDS rounds.
#
# Pinning. The generator on GEN_CPU; the proxies and the backends on
# PROXY_CPU, the Go programs with GOMAXPROCS=1 and HAProxy with nbthread
# 1, all at nice NICE, as scripts/bench-lb.sh does. The generator costs
# about 170 us of CPU per request on this VM (a third of its core at
# 2000 req/s); when it falls behind, or other jobs take the CPU, an
# open-loop run collapses (requests pile up, each on a new connection),
# so every run records the CPU other processes used meanwhile, and a run
# whose generator sent under 95 % of the rate or saw client timeouts gets
# suspect=1 on its line.
#
# Output in OUT: runs.txt (one line per run: proxy, multiple, round, then
# key=value: the generator's figures (scripts/overload), the proxy's CPU
# and the foreign CPU, % of a core over the run), table.md (the table,
# also printed), lb.yaml, haproxy.cfg, every process's log, and the lb's
# /status after each of its runs (lb-status-mM-rR.json).
#
# Environment (defaults in brackets):
#   BIN [/tmp/spillway-overload]  NOBUILD [""]: 1 uses BIN as it is  OUT [a new temp dir]
#   INSTANCES [3]  CAPACITY [4]  LATENCY_MS [60]  BE_QUEUE_SIZE [32]  BE_QUEUE_TIMEOUT [250ms]
#   LB_QUEUE_SIZE [INSTANCES x CAPACITY]  QUEUE_TIMEOUT [100ms]: both proxies  HAPROXY_MAXQUEUE [CAPACITY]
#   LB_LIMIT [unknown]: unknown_instance_limit, or report (a stub report)  REPORT_ADDR [127.0.0.1:19300]
#   MULTIPLES ["1 2 5 10"]  ROUNDS [3]  WARMUP [2s]  DURATION [10s]  TIMEOUT [2s]  SETTLE [1]: seconds
#   GEN_CPU [0]  PROXY_CPU [1]  NICE [-10 as root, else 0]: of every process started
#   NOISE_PCT [20]: warn when other processes used more than this % of a core during a run
#   BE_PORT [19201]: the instances on BE_PORT, BE_PORT+1, ...  LB_ADDR [127.0.0.1:18201]
#   ADMIN_ADDR [127.0.0.1:18202]  HAPROXY_ADDR [127.0.0.1:18203]
#   SPILLWAY_ADMIN_TOKEN [bench-admin-token-not-secret]
# Only 127.0.0.1 is used; every process this script starts is stopped by PID.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

BIN=${BIN:-/tmp/spillway-overload}
OUT=${OUT:-$(mktemp -d /tmp/bench-overload.XXXXXX)}
INSTANCES=${INSTANCES:-3}
CAPACITY=${CAPACITY:-4}
LATENCY_MS=${LATENCY_MS:-60}
BE_QUEUE_SIZE=${BE_QUEUE_SIZE:-32}
BE_QUEUE_TIMEOUT=${BE_QUEUE_TIMEOUT:-250ms}
LB_QUEUE_SIZE=${LB_QUEUE_SIZE:-$((INSTANCES * CAPACITY))}
QUEUE_TIMEOUT=${QUEUE_TIMEOUT:-100ms}
HAPROXY_MAXQUEUE=${HAPROXY_MAXQUEUE:-$CAPACITY}
MULTIPLES=${MULTIPLES:-1 2 5 10}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-2s}
DURATION=${DURATION:-10s}
TIMEOUT=${TIMEOUT:-2s}
SETTLE=${SETTLE:-1}
GEN_CPU=${GEN_CPU:-0}
PROXY_CPU=${PROXY_CPU:-1}
NOISE_PCT=${NOISE_PCT:-20}
NICE=${NICE:-$([ "$(id -u)" = 0 ] && echo -10 || echo 0)}
BE_PORT=${BE_PORT:-19201}
LB_ADDR=${LB_ADDR:-127.0.0.1:18201}
ADMIN_ADDR=${ADMIN_ADDR:-127.0.0.1:18202}
HAPROXY_ADDR=${HAPROXY_ADDR:-127.0.0.1:18203}
LB_LIMIT=${LB_LIMIT:-unknown}
REPORT_ADDR=${REPORT_ADDR:-127.0.0.1:19300}
export SPILLWAY_ADMIN_TOKEN=${SPILLWAY_ADMIN_TOKEN:-bench-admin-token-not-secret}
mkdir -p "$OUT"

for t in go haproxy curl jq taskset timeout; do
	command -v "$t" >/dev/null || { echo "bench-overload: $t not found" >&2; exit 2; }
done
case $LB_LIMIT in unknown | report) ;; *) echo "bench-overload: LB_LIMIT must be unknown or report" >&2; exit 2 ;; esac
for a in "$LB_ADDR" "$ADMIN_ADDR" "$HAPROXY_ADDR" "$REPORT_ADDR"; do
	case $a in 127.0.0.1:*) ;; *) echo "bench-overload: $a must be on 127.0.0.1" >&2; exit 2 ;; esac
done

# The fleet's capacity, req/s.
FLEET_RPS=$((INSTANCES * CAPACITY * 1000 / LATENCY_MS))
BACKENDS=()
for ((i = 0; i < INSTANCES; i++)); do BACKENDS+=("127.0.0.1:$((BE_PORT + i))"); done

[ -n "${NOBUILD:-}" ] || echo "== build $BIN" >&2
[ -n "${NOBUILD:-}" ] || CGO_ENABLED=0 go build -o "$BIN" ./cmd/spillway
CGO_ENABLED=0 go build -o "$OUT/overload" ./scripts/overload

# The spillway lb configuration.
{
	cat <<EOF
# Written by scripts/bench-overload.sh: spillway lb in front of $INSTANCES
# backend-sims of $CAPACITY workers each. Defaults unless noted.
lb:
  admin_listen: $ADMIN_ADDR
  instances:
EOF
	if [[ $LB_LIMIT == unknown ]]; then
		for b in "${BACKENDS[@]}"; do echo "    - {service: $b, health: $b}"; done
		cat <<EOF
  health_check:
    ready_path: /healthz    # backend-sim's health endpoint (takes no worker)
    report_path: ""         # backend-sim has no spillway report: no limit reported
  admission:
    unknown_instance_limit: $CAPACITY  # each instance's workers: edge bound $((INSTANCES * CAPACITY))
EOF
	else
		for b in "${BACKENDS[@]}"; do echo "    - {service: $b, health: $REPORT_ADDR}"; done
		cat <<EOF
  health_check:             # a stub: /readyz 200, /health {"ready":true,"limit":$CAPACITY}
    ready_path: /readyz
    report_path: /health
  admission:                # each instance reports its workers: edge bound $((INSTANCES * CAPACITY))
EOF
	fi
	cat <<EOF
    queue_size: $LB_QUEUE_SIZE
    queue_timeout: $QUEUE_TIMEOUT
EOF
} >"$OUT/lb.yaml"

# The HAProxy configuration.
{
	cat <<EOF
# Written by scripts/bench-overload.sh: HAProxy in front of $INSTANCES
# backend-sims of $CAPACITY workers each.
global
    nbthread 1
    maxconn 8000

defaults
    mode http
    option http-keep-alive
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    timeout http-keep-alive 30s

frontend fe
    bind $HAPROXY_ADDR
    default_backend fleet

backend fleet
    balance leastconn
    http-reuse always
    timeout queue $QUEUE_TIMEOUT
    option httpchk GET /healthz
    default-server check inter 2s fall 3 rise 2 maxconn $CAPACITY maxqueue $HAPROXY_MAXQUEUE
EOF
	for i in "${!BACKENDS[@]}"; do echo "    server be$((i + 1)) ${BACKENDS[$i]}"; done
} >"$OUT/haproxy.cfg"
haproxy -c -q -f "$OUT/haproxy.cfg"

# shellcheck source=scripts/pids.sh
. "$ROOT/scripts/pids.sh" # pids, stop_all
trap stop_all EXIT
trap 'exit 130' INT TERM

on_proxy=(nice -n "$NICE" taskset -c "$PROXY_CPU" env GOMAXPROCS=1)
on_gen=(nice -n "$NICE" taskset -c "$GEN_CPU")
CLK=$(getconf CLK_TCK)

# ticks PID: its utime+stime in clock ticks (0 once it is gone).
ticks() {
	local line
	local -a f
	read -r line <"/proc/$1/stat" 2>/dev/null || { echo 0; return; }
	read -ra f <<<"${line##*) }"
	echo $((f[11] + f[12]))
}
# busy: the machine's busy and stolen ticks.
busy() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
# ours: ticks of every process this script started and of the children
# it has reaped (the generator runs and their command substitutions).
ours() {
	local p line n=0
	local -a f
	for p in "${pids[@]}"; do n=$((n + $(ticks "$p"))); done
	read -r line <"/proc/$$/stat"
	read -ra f <<<"${line##*) }"
	echo $((n + f[13] + f[14]))
}

# wait_200 URL WHAT [DATA]: until URL answers 200 (a POST with DATA if
# given), 20 s at most.
wait_200() {
	local i args=(-fs -o /dev/null --max-time 1)
	[ -z "${3:-}" ] || args+=(-H 'Content-Type: application/json' -d "$3")
	for i in $(seq 200); do
		curl "${args[@]}" "$1" && return 0
		sleep 0.1
	done
	echo "bench-overload: $2 did not answer 200 within 20 s" >&2
	exit 1
}

# start_all ROUND: the fleet, HAProxy and spillway lb, fresh.
start_all() {
	local r=$1 b
	for b in "${BACKENDS[@]}"; do
		"${on_proxy[@]}" "$BIN" backend-sim --listen "$b" --capacity "$CAPACITY" --latency "${LATENCY_MS}ms" \
			--queue-size "$BE_QUEUE_SIZE" --queue-timeout "$BE_QUEUE_TIMEOUT" >"$OUT/backend-${b##*:}-r$r.log" 2>&1 &
		pids+=($!)
	done
	for b in "${BACKENDS[@]}"; do wait_200 "http://$b/healthz" "backend-sim $b"; done
	if [[ $LB_LIMIT == report ]]; then
		"${on_proxy[@]}" "$OUT/overload" -serve-report "$REPORT_ADDR" -report-limit "$CAPACITY" >"$OUT/report-r$r.log" 2>&1 &
		pids+=($!)
		wait_200 "http://$REPORT_ADDR/health" "the report stub"
	fi
	nice -n "$NICE" taskset -c "$PROXY_CPU" haproxy -db -f "$OUT/haproxy.cfg" >"$OUT/haproxy-r$r.log" 2>&1 &
	pids+=($!)
	HAPROXY_PID=$!
	"${on_proxy[@]}" "$BIN" lb --config "$OUT/lb.yaml" --listen "$LB_ADDR" --log-level warn >"$OUT/lb-r$r.log" 2>&1 &
	pids+=($!)
	LB_PID=$!
	wait_200 "http://$ADMIN_ADDR/readyz" "spillway lb"
	wait_200 "http://$LB_ADDR/v1/validate" "spillway lb (a validate call)" '{"ticket":"valid-bench"}'
	wait_200 "http://$HAPROXY_ADDR/v1/validate" "HAProxy (a validate call)" '{"ticket":"valid-bench"}'
	# The lb's slow start (10 s) ramps its edge bound up to
	# INSTANCES x CAPACITY; measure only once it is there.
	local want=$((INSTANCES * CAPACITY)) limit i
	for i in $(seq 300); do
		limit=$(curl -fs --max-time 1 "http://$ADMIN_ADDR/status" | jq -r '.capacity.limit // 0')
		((limit == want)) && return 0
		sleep 0.1
	done
	echo "bench-overload: the lb's edge bound is $limit after 30 s, expected $want" >&2
	exit 1
}

# one PROXY MULTIPLE ROUND: one run; appends a line to $OUT/runs.txt:
# the generator's RESULT, then the proxy's CPU (% of a core) and the CPU
# that neither the proxies, the backends nor the generator used (foreign,
# % of a core: other jobs on this shared machine, or the hypervisor's
# steal), both over the whole run, warm-up included.
one() {
	local proxy=$1 m=$2 r=$3 url line args=() b pid p0 p1 o0 o1 b0 b1 w0 w1 foreign
	case $proxy in
	spillway) url=http://$LB_ADDR/v1/validate pid=$LB_PID ;;
	haproxy) url=http://$HAPROXY_ADDR/v1/validate pid=$HAPROXY_PID ;;
	esac
	for b in "${BACKENDS[@]}"; do args+=(-backend "http://$b"); done
	p0=$(ticks "$pid") o0=$(ours) b0=$(busy) w0=$(date +%s%N)
	line=$(timeout 120 "${on_gen[@]}" "$OUT/overload" -url "$url" -rate $((m * FLEET_RPS)) -warmup "$WARMUP" \
		-duration "$DURATION" -timeout "$TIMEOUT" "${args[@]}" | grep '^RESULT')
	p1=$(ticks "$pid") o1=$(ours) b1=$(busy) w1=$(date +%s%N)
	foreign=$(awk -v b=$((b1 - b0)) -v o=$((o1 - o0)) -v k="$CLK" -v w=$((w1 - w0)) 'BEGIN {f = (b - o) / k / (w / 1e9) * 100; printf "%.0f", f < 0 ? 0 : f}')
	line="$proxy $m $r ${line#RESULT } proxy_cpu_pct=$(awk -v t=$((p1 - p0)) -v k="$CLK" -v w=$((w1 - w0)) 'BEGIN {printf "%.0f", t / k / (w / 1e9) * 100}') foreign_cpu_pct=$foreign"
	# suspect: the generator fell behind, or requests timed out.
	line="$line suspect=$(awk '{for (i = 4; i <= NF; i++) {split($i, kv, "="); v[kv[1]] = kv[2]}}
		END {print (v["offered_rps"] < 0.95 * v["target_rps"] || v["timeouts"] + v["dropped"] > 0) ? 1 : 0}' <<<"$line")"
	echo "$line" | tee -a "$OUT/runs.txt"
	((foreign <= NOISE_PCT)) || echo "   (warning: other processes used ${foreign}% of a core during this run)" >&2
	if [[ $proxy == spillway ]]; then
		curl -fsS "http://$ADMIN_ADDR/status" >"$OUT/lb-status-m$m-r$r.json"
		jq -c '{routable: .routing.routable, ejections: .counters.ejections, requests: .counters.requests, retries: .counters.retries}' \
			"$OUT/lb-status-m$m-r$r.json" >&2
	fi
	sleep "$SETTLE"
}

echo "== fleet: $INSTANCES x backend-sim --capacity $CAPACITY --latency ${LATENCY_MS}ms = $FLEET_RPS req/s; output in $OUT" >&2
: >"$OUT/runs.txt"
for ((r = 1; r <= ROUNDS; r++)); do
	echo "== round $r: start the fleet and both proxies" >&2
	start_all "$r"
	order="spillway haproxy"
	((r % 2)) || order="haproxy spillway"
	for m in $MULTIPLES; do
		for p in $order; do one "$p" "$m" "$r"; done
	done
	stop_all
done

# The table: medians over rounds per proxy and multiple.
{
	echo
	echo "Fleet: $INSTANCES x backend-sim --capacity $CAPACITY --latency ${LATENCY_MS}ms = $FLEET_RPS req/s; lb limit: $LB_LIMIT." \
		"Medians of $ROUNDS rounds of $DURATION (goodput: median [min-max])."
	echo
	echo "| load | proxy | offered req/s | goodput 2xx/s | of capacity | 2xx p50 ms | 2xx p99 ms | 503/s | 503 p50 ms | 503 p99 ms | errors + timeouts | backend 503s | proxy CPU % |"
	echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
	awk -v cap="$FLEET_RPS" -v mults="$MULTIPLES" '
	{
		k = $2 " " $1; n[k]++
		for (i = 4; i <= NF; i++) { split($i, kv, "="); v[k, kv[1], n[k]] = kv[2] }
		v[k, "bad", n[k]] = v[k, "errors", n[k]] + v[k, "timeouts", n[k]] + v[k, "dropped", n[k]] + v[k, "other_status", n[k]]
		v[k, "be503", n[k]] = v[k, "be_queue_full", n[k]] + v[k, "be_queue_timeout", n[k]]
	}
	function med(k, f,    m, a, j, x, y) {
		m = n[k]; for (j = 1; j <= m; j++) a[j] = v[k, f, j] + 0
		for (x = 2; x <= m; x++) { y = a[x]; for (j = x - 1; j >= 1 && a[j] > y; j--) a[j + 1] = a[j]; a[j + 1] = y }
		lo = a[1]; hi = a[m]
		return m % 2 ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
	}
	function msf(x) { return x < 0 ? "—" : sprintf("%.1f", x) }
	END {
		nm = split(mults, M, " ")
		for (i = 1; i <= nm; i++) for (p = 1; p <= 2; p++) {
			proxy = p == 1 ? "spillway" : "haproxy"; k = M[i] " " proxy
			if (!(k in n)) continue
			g = med(k, "ok_rps"); glo = lo; ghi = hi
			printf "| %sx | %s | %.0f | %.0f [%.0f-%.0f] | %.1f %% | %s | %s | %.0f | %s | %s | %.0f | %.0f | %.0f |\n",
				M[i], proxy == "spillway" ? "spillway lb" : "HAProxy", med(k, "offered_rps"), g, glo, ghi, 100 * g / cap,
				msf(med(k, "ok_p50_ms")), msf(med(k, "ok_p99_ms")), med(k, "s503_rps"), msf(med(k, "s503_p50_ms")),
				msf(med(k, "s503_p99_ms")), med(k, "bad"), med(k, "be503"), med(k, "proxy_cpu_pct")
		}
	}' "$OUT/runs.txt"
	awk '{for (i = 4; i <= NF; i++) if ($i ~ /^foreign_cpu_pct=/) {split($i, kv, "="); f = kv[2] + 0; s += f; if (f > mx) mx = f; c++}
		if ($NF == "suspect=1") bad++}
		END {if (c) printf "\nCPU used by other processes during the runs: mean %.0f %%, max %.0f %% of a core. Suspect runs: %d of %d.\n", s / c, mx, bad, c}' "$OUT/runs.txt"
} | tee "$OUT/table.md"
echo "== runs in $OUT/runs.txt, table in $OUT/table.md" >&2
