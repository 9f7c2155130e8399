#!/usr/bin/env bash
# Benchmarks `spillway lb`, every feature on, against HAProxy, nginx, Caddy
# and the plain httputil.ReverseProxy baseline with the shared harness
# (../shared/bench/run.sh), and measures the latency of its shed answers.
# See docs/BENCHMARKS.md, "Load balancer".
#
# Usage (from anywhere; needs go, wrk, curl, taskset and the harness's tools):
#   ./scripts/bench-lb.sh          # peers: run.sh with spillway as `custom`, ~12 min
#   ./scripts/bench-lb.sh shed     # shed path: wrk -c1 and -c8 against forced shedding, ~2 min
#   ./scripts/bench-lb.sh ab BIN_A BIN_B   # A/B of two builds, interleaved, ~1 min per round
#
# Peers. The harness starts two upstreams (127.0.0.1:9001, :9002) and each
# proxy in turn; spillway is started as
#   $BIN lb --config $OUT/lb.yaml --listen 127.0.0.1:$BENCH_PORT --log-level warn
# with the config written below. Every feature is on, at its default unless
# noted in the file: active health checks, outlier ejection, panic
# threshold, slow start, edge shedding (route "/" needs dependency
# "backend"), edge admission and the retry budget. The upstreams have no
# /readyz or /health, so both health paths point at their /__stats, which
# answers 200 with a JSON object: the ready check passes, and the report
# decodes as a health.Report with every field zero (not ready, so no
# shedding vote; limit 0, so admission.unknown_instance_limit supplies the
# capacity). The harness's knobs (TARGETS, CONNS, ROUNDS, PIN, ...) pass
# through; results go where run.sh puts them (its results/ directory, or
# RESULTS_DIR).
#
# Shed. One spillway lb in front of one upstream, shedding forced on through
# the admin API (PUT /shedding/backend {"mode":"on"}); then, REPEATS times,
# wrk for DURATION at each of SHED_CONNS connections (lb on LB_CPU with
# GOMAXPROCS=1, wrk on WRK_CPU). Prints latency percentiles of the 503s
# and the lb's CPU per answer.
#
# A/B. Two spillway binaries (or one binary under two environments, ENV_A /
# ENV_B, e.g. ENV_B="GOGC=400") in front of the same two upstreams, in the
# harness's pinned layout (wrk on WRK_CPU; lb and upstreams on LB_CPU,
# GOMAXPROCS=1, nice -10), run A B A B ... ROUNDS times, each on a fresh lb:
# per connection count a warm-up, then one recorded wrk run. Prints one line
# per run (req/s, p50/p99, lb CPU µs/req from /proc/PID/stat, VmRSS) and the
# medians. Before each recorded run it waits for the machine to be quiet;
# a run during which other processes used (or the hypervisor stole) more
# than NOISE_PCT (15) % of a core is redone, twice at most (the last attempt
# is kept and its foreign CPU printed). Compare only the two sides of one
# invocation. With SPILLWAY_PROF=PREFIX, each recorded run is bracketed by
# two SIGUSR1 to the lb and its wrk result appended to PREFIX-A-1.runs etc.:
# for a profiling build whose init() starts a CPU profile and snapshots
# runtime.MemStats on the first signal and writes them on the second (how
# docs/BENCHMARKS.md counted allocations per request). Not for plain builds,
# which SIGUSR1 kills.
#
# Environment (defaults in brackets):
#   BIN [/tmp/spillway-bench]  BENCH [<repo>/../shared/bench]  OUT [a new temp dir]
#   SPILLWAY_ADMIN_TOKEN [bench-admin-token-not-secret]  ADMIN_ADDR [127.0.0.1:18086]
#   TARGETS ["direct haproxy nginx caddy naive custom"]  CONNS ["64 256"]  ROUNDS [3]
#   ab: ROUNDS [5]  CONNS ["64 256"]  DURATION [10s]  WARMUP [3s]  ENV_A [""]  ENV_B [""]
#   shed: SHED_CONNS ["1 8"]  REPEATS [3]  DURATION [10s]  LB_ADDR [127.0.0.1:18085]
#         UPSTREAM_ADDR [127.0.0.1:19001]  WRK_CPU [0]  LB_CPU [1]
# Only 127.0.0.1 is used; every process this script starts is stopped by PID.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

MODE=${1:-peers}
BIN=${BIN:-/tmp/spillway-bench}
BENCH=${BENCH:-$(cd "$ROOT/../shared/bench" 2>/dev/null && pwd || echo "$ROOT/../shared/bench")}
OUT=${OUT:-$(mktemp -d /tmp/bench-lb.XXXXXX)}
ADMIN_ADDR=${ADMIN_ADDR:-127.0.0.1:18086}
export SPILLWAY_ADMIN_TOKEN=${SPILLWAY_ADMIN_TOKEN:-bench-admin-token-not-secret}
mkdir -p "$OUT"

for t in go wrk curl taskset timeout; do
	command -v "$t" >/dev/null || { echo "bench-lb: $t not found" >&2; exit 2; }
done
case $ADMIN_ADDR in 127.0.0.1:*) ;; *) echo "bench-lb: ADMIN_ADDR must be on 127.0.0.1" >&2; exit 2 ;; esac

if [[ $MODE != ab ]]; then
	echo "== build $BIN" >&2
	CGO_ENABLED=0 go build -o "$BIN" ./cmd/spillway
fi

# write_config FILE UPSTREAM...: the lb section, every feature on.
write_config() {
	local f=$1 u
	shift
	{
		cat <<EOF
# Written by scripts/bench-lb.sh. Every feature on; defaults unless noted.
lb:
  admin_listen: $ADMIN_ADDR
  instances:
EOF
		for u; do echo "    - {service: $u, health: $u}"; done
		cat <<'EOF'
  health_check:              # active checks: defaults (2s ± 10%, 1s timeout, rise 2, fall 3)
    ready_path: /__stats     # the bench upstream has no /readyz: 200 + JSON
    report_path: /__stats    # decodes as an empty report: no vote, limit unknown
  outlier:
    consecutive_gateway_failures: 5
    max_ejected_share: 0.5
  slow_start:
    window: 10s
    min_weight: 0.1
  panic:
    threshold: 0.5
  shedding:
    quorum: 0.5
    recovery_window: 5s
  routes:
    - prefix: /              # every path needs "backend": one dependency checked per request
      dependencies: [backend]
  admission:
    unknown_instance_limit: 256 # per instance × slow-start weight: 512 once warm
    queue_size: 128
    queue_timeout: 100ms
  retry_budget:
    ratio: 0.2
EOF
	} >"$f"
}

peers() {
	local cfg=$OUT/lb.yaml
	write_config "$cfg" 127.0.0.1:9001 127.0.0.1:9002
	echo "== config $cfg" >&2
	# Fail early on a bad config (the harness would only time out).
	timeout 2 "$BIN" lb --config "$cfg" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --log-level error 2>"$OUT/check.log" || {
		rc=$?
		((rc == 124)) || { cat "$OUT/check.log" >&2; exit 1; }
	}
	TARGETS=${TARGETS:-"direct haproxy nginx caddy naive custom"} \
		CONNS=${CONNS:-"64 256"} ROUNDS=${ROUNDS:-3} PIN=${PIN:-1} \
		CUSTOM_CMD="$BIN lb --config $cfg --listen 127.0.0.1:\$BENCH_PORT --log-level warn" \
		"$BENCH/run.sh"
}

# shellcheck source=scripts/pids.sh
. "$ROOT/scripts/pids.sh" # pids, stop_all

shed() {
	local lb_addr=${LB_ADDR:-127.0.0.1:18085} up=${UPSTREAM_ADDR:-127.0.0.1:19001}
	local wrk_cpu=${WRK_CPU:-0} lb_cpu=${LB_CPU:-1} dur=${DURATION:-10s} c i
	trap stop_all EXIT
	trap 'exit 130' INT TERM
	(cd "$BENCH/upstream" && GOTOOLCHAIN=local go build -o "$OUT/upstream" .)
	taskset -c "$lb_cpu" "$OUT/upstream" -port "${up##*:}" >"$OUT/upstream.log" 2>&1 &
	pids+=($!)
	write_config "$OUT/lb.yaml" "$up"
	taskset -c "$lb_cpu" env GOMAXPROCS=1 "$BIN" lb --config "$OUT/lb.yaml" --listen "$lb_addr" --log-level warn >"$OUT/lb.log" 2>&1 &
	pids+=($!)
	for i in $(seq 100); do
		curl -fs -o /dev/null --max-time 1 "http://$lb_addr/" && break
		((i < 100)) || { echo "bench-lb: lb did not route within 10s" >&2; cat "$OUT/lb.log" >&2; exit 1; }
		sleep 0.1
	done
	curl -fsS -X PUT -H "Authorization: Bearer $SPILLWAY_ADMIN_TOKEN" \
		-d '{"mode":"on"}' "http://$ADMIN_ADDR/shedding/backend" >/dev/null
	local code
	code=$(curl -s -o /dev/null -w '%{http_code}' "http://$lb_addr/")
	[[ $code == 503 ]] || { echo "bench-lb: expected a shed 503, got $code" >&2; exit 1; }
	cat >"$OUT/report.lua" <<'EOF'
done = function(s, lat, req)
  io.write(string.format("RESULT requests=%d rps=%.0f p50_us=%.0f p90_us=%.0f p99_us=%.0f p999_us=%.0f max_us=%.0f\n",
    s.requests, s.requests / s.duration * 1e6, lat:percentile(50), lat:percentile(90),
    lat:percentile(99), lat:percentile(99.9), lat.max))
end
EOF
	local r t0 t1 line clk
	clk=$(getconf CLK_TCK)
	for ((r = 1; r <= ${REPEATS:-3}; r++)); do
		for c in ${SHED_CONNS:-1 8}; do
			timeout 60 taskset -c "$wrk_cpu" wrk -t1 -c"$c" -d2s "http://$lb_addr/" >/dev/null # warm-up
			t0=$(ticks "${pids[1]}")
			timeout 90 taskset -c "$wrk_cpu" wrk -t1 -c"$c" -d"$dur" --latency -s "$OUT/report.lua" "http://$lb_addr/" >"$OUT/shed-c$c-r$r.txt"
			t1=$(ticks "${pids[1]}")
			line=$(grep '^RESULT' "$OUT/shed-c$c-r$r.txt")
			grep -q 'Non-2xx or 3xx responses' "$OUT/shed-c$c-r$r.txt" || { echo "bench-lb: shed run without 503s?" >&2; exit 1; }
			echo "c=$c r=$r ${line#RESULT } lb_cpu_us_per_answer=$(awk -v t=$((t1 - t0)) -v k="$clk" -v l="$line" 'BEGIN {split(l, a, /requests=/); split(a[2], b, " "); printf "%.1f", t / k * 1e6 / b[1]}')"
		done
	done
	curl -fsS "http://$ADMIN_ADDR/status" >"$OUT/status.json" || true
	echo "== requests that reached the upstream (1: the probe before shedding was switched on):" >&2
	curl -fsS "http://$up/__stats" >&2 || true
	grep -E 'VmRSS|VmHWM' "/proc/${pids[1]}/status" >&2 || true
	echo "== output in $OUT" >&2
}

# ticks PID: utime+stime in clock ticks.
ticks() {
	local line
	local -a f
	read -r line <"/proc/$1/stat"
	read -ra f <<<"${line##*) }"
	echo $((f[11] + f[12]))
}

ab() {
	local bin_a=${1:?usage: bench-lb.sh ab BIN_A BIN_B} bin_b=${2:?usage: bench-lb.sh ab BIN_A BIN_B}
	local wrk_cpu=${WRK_CPU:-0} lb_cpu=${LB_CPU:-1} dur=${DURATION:-10s} warm=${WARMUP:-3s}
	local clk round c which bin envs pid t0 t1 o0 o1 b0 b1 w0 w1 attempt foreign line i rss kv
	clk=$(getconf CLK_TCK)
	# busy: machine-wide busy + stolen ticks; ours: upstreams + reaped
	# children (wrk).
	busy() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
	ours() {
		local line
		local -a f
		read -r line <"/proc/$$/stat"
		read -ra f <<<"${line##*) }"
		echo $(($(ticks "${pids[0]}") + $(ticks "${pids[1]}") + f[13] + f[14]))
	}
	# quiet: wait (30 s at most) until the machine is under 20% of a core busy.
	quiet() {
		local a b n
		for n in $(seq 30); do
			a=$(busy); sleep 1; b=$(busy)
			(((b - a) * 100 / clk < 20)) && return 0
		done
		return 0
	}
	trap stop_all EXIT
	trap 'exit 130' INT TERM
	(cd "$BENCH/upstream" && GOTOOLCHAIN=local go build -o "$OUT/upstream" .)
	for p in 9001 9002; do
		nice -n -10 taskset -c "$lb_cpu" env GOMAXPROCS=1 "$OUT/upstream" -port "$p" >"$OUT/upstream-$p.log" 2>&1 &
		pids+=($!)
	done
	write_config "$OUT/lb.yaml" 127.0.0.1:9001 127.0.0.1:9002
	cat >"$OUT/report.lua" <<'EOF'
done = function(s, lat, req)
  io.write(string.format("RESULT requests=%d rps=%.0f p50_us=%.0f p99_us=%.0f errors=%d\n",
    s.requests, s.requests / s.duration * 1e6, lat:percentile(50), lat:percentile(99),
    s.errors.connect + s.errors.read + s.errors.write + s.errors.status + s.errors.timeout))
end
EOF
	echo "which conns round rps p50_us p99_us errors cpu_us_per_req rss_kb foreign_pct" >"$OUT/ab.txt"
	for ((round = 1; round <= ${ROUNDS:-5}; round++)); do
		for which in A B; do
			if [[ $which == A ]]; then bin=$bin_a envs=${ENV_A:-}; else bin=$bin_b envs=${ENV_B:-}; fi
			# shellcheck disable=SC2086 # envs: NAME=VALUE words
			nice -n -10 taskset -c "$lb_cpu" env GOMAXPROCS=1 $envs SPILLWAY_PROF="${SPILLWAY_PROF:+$SPILLWAY_PROF-$which-$round}" \
				"$bin" lb --config "$OUT/lb.yaml" --listen 127.0.0.1:8085 --log-level warn >"$OUT/lb-$which-$round.log" 2>&1 &
			pid=$!
			pids+=("$pid")
			for i in $(seq 100); do
				curl -fs -o /dev/null --max-time 1 http://127.0.0.1:8085/ && break
				((i < 100)) || { echo "bench-lb: lb $which did not route" >&2; exit 1; }
				sleep 0.1
			done
			for c in ${CONNS:-64 256}; do
				timeout 60 nice -n -10 taskset -c "$wrk_cpu" wrk -t1 -c"$c" -d"$warm" http://127.0.0.1:8085/ >/dev/null
				for attempt in 1 2 3; do
					quiet
					[[ -z ${SPILLWAY_PROF:-} ]] || kill -USR1 "$pid"
					t0=$(ticks "$pid") o0=$(ours) b0=$(busy) w0=$SECONDS
					line=$(timeout 90 nice -n -10 taskset -c "$wrk_cpu" wrk -t1 -c"$c" -d"$dur" -s "$OUT/report.lua" http://127.0.0.1:8085/ | grep '^RESULT')
					t1=$(ticks "$pid") o1=$(ours) b1=$(busy) w1=$SECONDS
					if [[ -n ${SPILLWAY_PROF:-} ]]; then # a profiling build (not this repo's): see its hook
						kill -USR1 "$pid"
						echo "${line#RESULT }" >>"$SPILLWAY_PROF-$which-$round.runs"
					fi
					# Foreign CPU: busy or stolen time of the machine not spent by
					# lb, upstreams, wrk.
					foreign=$(((b1 - b0 - (o1 - o0) - (t1 - t0)) * 100 / (clk * (w1 - w0 > 0 ? w1 - w0 : 1))))
					((foreign > ${NOISE_PCT:-15} && attempt < 3)) || break
					echo "   (redo: foreign CPU ${foreign}% of a core)" >&2
				done
				rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")
				local -A R=()
				for kv in ${line#RESULT }; do R[${kv%%=*}]=${kv#*=}; done
				echo "$which $c $round ${R[rps]} ${R[p50_us]} ${R[p99_us]} ${R[errors]} $(awk -v t=$((t1 - t0)) -v k="$clk" -v n="${R[requests]}" 'BEGIN {printf "%.1f", t / k * 1e6 / n}') $rss $foreign" | tee -a "$OUT/ab.txt"
			done
			[[ -z ${SPILLWAY_PROF:-} ]] || sleep 2 # let it write the profile
			kill -TERM "$pid"
			wait "$pid" 2>/dev/null || true
			pids=("${pids[@]:0:2}")
		done
	done
	echo "== medians in $OUT/ab.txt"
	awk 'NR > 1 { k = $1 " c=" $2; n[k]++; for (i = 4; i <= 9; i++) v[k, i, n[k]] = $i }
	function med(k, i,    m, a, j, x, y) { m = n[k]; for (j = 1; j <= m; j++) a[j] = v[k, i, j]
		for (x = 2; x <= m; x++) { y = a[x]; for (j = x - 1; j >= 1 && a[j] > y; j--) a[j + 1] = a[j]; a[j + 1] = y }
		return m % 2 ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2 }
	END { for (k in n) printf "%s: rps %.0f p50 %.0fus p99 %.0fus errors %d cpu %.1fus/req rss %.0fkB (n=%d)\n", k, med(k, 4), med(k, 5), med(k, 6), med(k, 7), med(k, 8), med(k, 9), n[k] }' "$OUT/ab.txt" | sort
}

case $MODE in
peers) peers ;;
shed) shed ;;
ab) ab "${@:2}" ;;
*) echo "usage: $0 [peers|shed|ab BIN_A BIN_B]" >&2; exit 2 ;;
esac
