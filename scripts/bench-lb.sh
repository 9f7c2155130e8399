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
#   ./scripts/bench-lb.sh tls      # spillway and HAProxy, plain and terminating TLS, paired, ~6 min
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
# TLS. spillway lb and HAProxy (the harness's configs/haproxy.cfg, nbthread
# 1), each twice: plain HTTP and terminating TLS (the same P-256 ECDSA
# certificate, made here with openssl; HAProxy `bind ... ssl crt`, its
# default ciphers; spillway --tls-cert/--tls-key, Go's defaults; TLS 1.3
# with both, as wrk's OpenSSL offers it), in front of the harness's two
# upstreams. Paired, as scripts/bench-controller-paired.sh explains: the
# four proxies and the upstreams share LB_CPU (GOMAXPROCS=1 for the Go
# programs), and two wrk processes on WRK_CPU load HAProxy and spillway AT
# THE SAME TIME with the same number of connections, so their req/s ratio
# is the inverse ratio of their CPU per request whatever the shared VM does
# meanwhile (the harness's interleaved runs cannot resolve 10 % here). Each
# round measures the plain pair, then the TLS pair, per concurrency; the
# figure is spillway/HAProxy per round and its median, plain against TLS.
# Keep-alive connections (wrk's way): the handshake is paid once per
# connection, so this is the cost of encrypting the stream; HANDSHAKES=1
# adds a pair with `Connection: close` on every request (a handshake each,
# c=16), the cost of the handshake itself.
#
# Environment (defaults in brackets):
#   BIN [/tmp/spillway-bench]  NOBUILD [""]: 1 uses BIN as it is  BENCH [<repo>/../shared/bench]  OUT [a new temp dir]
#   SPILLWAY_ADMIN_TOKEN [bench-admin-token-not-secret]  ADMIN_ADDR [127.0.0.1:18086]
#   TARGETS ["direct haproxy nginx caddy naive custom"]  CONNS ["64 256"]  ROUNDS [3]
#   ab: ROUNDS [5]  CONNS ["64 256"]  DURATION [10s]  WARMUP [3s]  ENV_A [""]  ENV_B [""]
#   tls: ROUNDS [5]  CONNS ["64 256"]  DURATION [10]  HANDSHAKES [0]  WRK_CPU [0]  LB_CPU [1]
#        ports 8101-8104 (HAProxy plain, spillway plain, HAProxy TLS, spillway TLS), admin 18087, 18088
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
	[ -n "${NOBUILD:-}" ] || echo "== build $BIN" >&2
	[ -n "${NOBUILD:-}" ] || CGO_ENABLED=0 go build -o "$BIN" ./cmd/spillway
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

tls() {
	local wrk_cpu=${WRK_CPU:-0} lb_cpu=${LB_CPU:-1} dur=${DURATION:-10} c r i port
	command -v openssl >/dev/null || { echo "bench-lb: openssl not found" >&2; exit 2; }
	command -v haproxy >/dev/null || { echo "bench-lb: haproxy not found" >&2; exit 2; }
	trap stop_all EXIT
	trap 'exit 130' INT TERM
	local on_lb=(nice -n -10 taskset -c "$lb_cpu") on_wrk=(nice -n -10 taskset -c "$wrk_cpu")
	(cd "$BENCH/upstream" && GOTOOLCHAIN=local go build -o "$OUT/upstream" .)
	for port in 9001 9002; do
		"${on_lb[@]}" env GOMAXPROCS=1 "$OUT/upstream" -port "$port" >"$OUT/upstream-$port.log" 2>&1 &
		pids+=($!)
	done
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=127.0.0.1 \
		-addext subjectAltName=IP:127.0.0.1 -keyout "$OUT/key.pem" -out "$OUT/cert.pem" 2>/dev/null
	cat "$OUT/cert.pem" "$OUT/key.pem" >"$OUT/haproxy.pem"
	sed "s/@PORT@/8101/g; s/@WORKERS@/1/g; s/@UP1@/127.0.0.1:9001/; s/@UP2@/127.0.0.1:9002/" \
		"$BENCH/configs/haproxy.cfg" >"$OUT/haproxy-plain.cfg"
	sed "s/@PORT@/8103 ssl crt ${OUT//\//\\/}\/haproxy.pem/g; s/@WORKERS@/1/g; s/@UP1@/127.0.0.1:9001/; s/@UP2@/127.0.0.1:9002/" \
		"$BENCH/configs/haproxy.cfg" >"$OUT/haproxy-tls.cfg"
	for f in plain tls; do
		haproxy -c -q -f "$OUT/haproxy-$f.cfg"
		"${on_lb[@]}" haproxy -db -f "$OUT/haproxy-$f.cfg" >"$OUT/haproxy-$f.log" 2>&1 &
		pids+=($!)
	done
	ADMIN_ADDR=127.0.0.1:18087 write_config "$OUT/lb-plain.yaml" 127.0.0.1:9001 127.0.0.1:9002
	ADMIN_ADDR=127.0.0.1:18088 write_config "$OUT/lb-tls.yaml" 127.0.0.1:9001 127.0.0.1:9002
	"${on_lb[@]}" env GOMAXPROCS=1 "$BIN" lb --config "$OUT/lb-plain.yaml" --listen 127.0.0.1:8102 --log-level warn >"$OUT/lb-plain.log" 2>&1 &
	pids+=($!)
	"${on_lb[@]}" env GOMAXPROCS=1 "$BIN" lb --config "$OUT/lb-tls.yaml" --listen 127.0.0.1:8104 --log-level warn \
		--tls-cert "$OUT/cert.pem" --tls-key "$OUT/key.pem" >"$OUT/lb-tls.log" 2>&1 &
	pids+=($!)
	for port in 8101 8102 8103 8104; do
		local scheme=http
		((port < 8103)) || scheme=https
		for i in $(seq 100); do
			curl -fs -o /dev/null --max-time 1 --cacert "$OUT/cert.pem" "$scheme://127.0.0.1:$port/" && break
			((i < 100)) || { echo "bench-lb: no 200 from $scheme://127.0.0.1:$port/" >&2; exit 1; }
			sleep 0.1
		done
	done
	# The slow start (10 s in write_config) ends before the first
	# measurement: until then the balancer's admission limit is below 256.
	sleep 10
	# pair SECONDS CONNS TAG URL_HAPROXY URL_SPILLWAY [WRK ARGS]: both at
	# once; prints "haproxy spillway" req/s. A recorded run (not warm-*)
	# with an error or a non-2xx answer stops the script.
	pair() {
		local secs=$1 conns=$2 tag=$3 a=$4 b=$5 w side
		shift 5
		timeout $((secs + 30)) "${on_wrk[@]}" wrk -t1 -c"$conns" -d"${secs}s" "$@" "$a" >"$OUT/$tag-haproxy.txt" &
		w=$!
		timeout $((secs + 30)) "${on_wrk[@]}" wrk -t1 -c"$conns" -d"${secs}s" "$@" "$b" >"$OUT/$tag-spillway.txt"
		wait "$w"
		for side in haproxy spillway; do
			[[ $tag != warm-* ]] || continue
			if grep -qE 'Non-2xx|Socket errors' "$OUT/$tag-$side.txt"; then
				echo "bench-lb: errors or non-2xx answers ($side, $tag):" >&2
				cat "$OUT/$tag-$side.txt" >&2
				exit 1
			fi
		done
		echo "$(awk '/Requests\/sec/{print $2}' "$OUT/$tag-haproxy.txt") $(awk '/Requests\/sec/{print $2}' "$OUT/$tag-spillway.txt")"
	}
	local -A ratios=()
	local kind a b ratio cs=${CONNS:-64 256}
	local kinds="plain tls"
	[[ ${HANDSHAKES:-0} == 0 ]] || kinds="$kinds handshake"
	echo "== ${ROUNDS:-5} rounds of ${dur}s; results in $OUT"
	for ((r = 1; r <= ${ROUNDS:-5}; r++)); do
		for kind in $kinds; do
			local urls=(http://127.0.0.1:8101/ http://127.0.0.1:8102/) extra=() conns=$cs
			[[ $kind == plain ]] || urls=(https://127.0.0.1:8103/ https://127.0.0.1:8104/)
			[[ $kind != handshake ]] || { extra=(-H "Connection: close"); conns=16; }
			for c in $conns; do
				pair 2 "$c" "warm-$kind-c$c-r$r" "${urls[@]}" "${extra[@]}" >/dev/null
				read -r a b < <(pair "$dur" "$c" "$kind-c$c-r$r" "${urls[@]}" "${extra[@]}")
				ratio=$(awk -v a="$a" -v b="$b" 'BEGIN{printf "%.3f", b/a}')
				ratios[$kind-$c]+="$ratio "
				echo "round $r $kind c=$c: haproxy $a req/s, spillway $b req/s, spillway/haproxy $ratio"
			done
		done
	done
	for kind in $kinds; do
		local conns=$cs
		[[ $kind != handshake ]] || conns=16
		for c in $conns; do
			# shellcheck disable=SC2086 # a space-separated list
			printf '%s\n' ${ratios[$kind-$c]} | sort -n | awk -v k="$kind c=$c" '{v[NR]=$1}
				END {printf "%s: median spillway/haproxy %.3f over %d rounds (range %s-%s)\n", k, (NR%2)?v[(NR+1)/2]:(v[NR/2]+v[NR/2+1])/2, NR, v[1], v[NR]}'
		done
	done
}

case $MODE in
peers) peers ;;
tls) tls ;;
shed) shed ;;
ab) ab "${@:2}" ;;
*) echo "usage: $0 [peers|shed|tls|ab BIN_A BIN_B]" >&2; exit 2 ;;
esac
