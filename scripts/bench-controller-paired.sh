#!/usr/bin/env bash
# Plain HAProxy against HAProxy driven by `spillway controller`, loaded AT
# THE SAME TIME on the same CPU: issue 13's "the controller adds nothing per
# request", measured so that the machine's own swings cancel out. See
# docs/BENCHMARKS.md, "HAProxy driven by the controller".
#
# Why: on a shared VM the CPU's speed swings by a third from one 10 s run
# to the next, and ../shared/bench's interleaved runs (bench-controller.sh)
# then cannot tell 5 % apart: the same plain HAProxy run twice as "haproxy"
# and "custom" measured 0.94 and 1.34. Here both proxies, the harness's two
# upstreams (../shared/bench/build/upstream, GOMAXPROCS=1) and the
# controller share one CPU (PROXY_CPU) and two wrk processes load both
# proxies at once from another (LOADGEN_CPU), each with the same number of
# connections. Under a CPU that both proxies want, the scheduler gives them
# equal time, so the ratio of their req/s is the inverse ratio of their CPU
# per request, whatever the machine does meanwhile.
#
# plain:      ../shared/bench/configs/haproxy.cfg (roundrobin, no log).
# controlled: what `spillway controller --print-haproxy-config` prints for
#             the two upstreams (share map looked up on every request,
#             health checks on, leastconn), with the controller running and
#             checking the upstreams (their /__stats stands for /readyz and
#             /health, as in bench-controller.sh).
#
# Usage: ./scripts/bench-controller-paired.sh      # ~4 min: c=64 and 256, 7 rounds of 10 s
# Environment [default]: ROUNDS [7] DURATION [10] CONNS ["64 256"]
#   VARIANT [none]: a sed expression applied to the controlled configuration,
#   to check that the method sees a known cost, e.g. the request log:
#   VARIANT='s/^defaults$/defaults\n    log global\n    option httplog/' 
#   PROXY_CPU [1] LOADGEN_CPU [0] NICE [-10] BIN [/tmp/spillway-bench-paired]
#   BENCH [<repo>/../shared/bench] OUT [a new temp dir]
# Output: one line per round (both req/s, the ratio), then the median
# ratio per concurrency; OUT keeps the configurations and wrk's output.
# Only 127.0.0.1 is used (ports 9001, 9002, 8101, 8102, 18088); every
# process is stopped by PID on exit, and every wrk run is bounded in time.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
ROUNDS=${ROUNDS:-7} DURATION=${DURATION:-10} CONNS=${CONNS:-"64 256"}
PROXY_CPU=${PROXY_CPU:-1} LOADGEN_CPU=${LOADGEN_CPU:-0} NICE=${NICE:--10}
BIN=${BIN:-/tmp/spillway-bench-paired}
BENCH=${BENCH:-$ROOT/../shared/bench}
OUT=${OUT:-$(mktemp -d /tmp/bench-paired.XXXXXX)}
for t in go haproxy wrk curl taskset; do
	command -v "$t" >/dev/null || { echo "bench-controller-paired: $t not found" >&2; exit 2; }
done
mkdir -p "$OUT"
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
echo "== build $BIN and the harness's upstream" >&2
CGO_ENABLED=0 go build -o "$BIN" ./cmd/spillway
[ -x "$BENCH/build/upstream" ] || (cd "$BENCH/upstream" && CGO_ENABLED=0 go build -o ../build/upstream .)
ON_PROXY=(nice -n "$NICE" taskset -c "$PROXY_CPU")
ON_LOAD=(nice -n "$NICE" taskset -c "$LOADGEN_CPU")

for p in 9001 9002; do
	GOMAXPROCS=1 "${ON_PROXY[@]}" "$BENCH/build/upstream" -port "$p" >"$OUT/upstream-$p.log" 2>&1 &
	pids+=($!)
done
sed "s/@PORT@/8101/g; s/@WORKERS@/1/g; s/@UP1@/127.0.0.1:9001/; s/@UP2@/127.0.0.1:9002/" \
	"$BENCH/configs/haproxy.cfg" >"$OUT/plain.cfg"
cat >"$OUT/controller.yaml" <<Y
lb:
  admin_listen: 127.0.0.1:18088
  health_check:
    ready_path: /__stats     # the bench upstream has no /readyz: 200 + JSON
    report_path: /__stats    # decodes as an empty report: no vote, limit unknown
  routes:
    - prefix: /              # every path needs "backend": the map is looked up per request
      dependencies: [backend]
Y
args=(--config "$OUT/controller.yaml" --haproxy-socket "$OUT/haproxy.sock" --haproxy-map "$OUT/routes.map"
	--instance 127.0.0.1:9001=127.0.0.1:9001 --instance 127.0.0.1:9002=127.0.0.1:9002)
"$BIN" controller --print-haproxy-config --listen 127.0.0.1:8102 "${args[@]}" >"$OUT/controlled.cfg"
: >"$OUT/routes.map"
[ -z "${VARIANT:-}" ] || sed -i -e "$VARIANT" "$OUT/controlled.cfg"
haproxy -c -q -f "$OUT/plain.cfg"
haproxy -c -q -f "$OUT/controlled.cfg"
"${ON_PROXY[@]}" haproxy -db -f "$OUT/plain.cfg" >"$OUT/plain.log" 2>&1 &
pids+=($!)
"${ON_PROXY[@]}" haproxy -db -f "$OUT/controlled.cfg" >"$OUT/controlled.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -S "$OUT/haproxy.sock" ] && break; sleep 0.05; done
SPILLWAY_ADMIN_TOKEN=bench-admin-token-not-secret "${ON_PROXY[@]}" "$BIN" controller "${args[@]}" \
	--admin-listen 127.0.0.1:18088 --log-level warn >"$OUT/controller.log" 2>&1 &
pids+=($!)
for port in 8101 8102; do
	ok=
	for _ in $(seq 100); do
		[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/")" = 200 ] && { ok=1; break; }
		sleep 0.1
	done
	[ -n "$ok" ] || { echo "bench-controller-paired: no 200 from 127.0.0.1:$port" >&2; exit 1; }
done

# pair SECONDS CONNS TAG: both wrk runs at once; prints "plain controlled".
pair() {
	"${ON_LOAD[@]}" timeout $(($1 + 30)) wrk -t1 -c"$2" -d"$1s" http://127.0.0.1:8101/ >"$OUT/$3-plain.txt" &
	local w=$!
	"${ON_LOAD[@]}" timeout $(($1 + 30)) wrk -t1 -c"$2" -d"$1s" http://127.0.0.1:8102/ >"$OUT/$3-controlled.txt"
	wait "$w"
	for side in plain controlled; do
		if grep -q 'Non-2xx' "$OUT/$3-$side.txt"; then
			echo "bench-controller-paired: non-2xx answers ($side, $3)" >&2
			exit 1
		fi
	done
	echo "$(awk '/Requests\/sec/{print $2}' "$OUT/$3-plain.txt") $(awk '/Requests\/sec/{print $2}' "$OUT/$3-controlled.txt")"
}
echo "== $ROUNDS rounds of ${DURATION}s per concurrency; both proxies loaded at once (results in $OUT)"
for c in $CONNS; do
	ratios=()
	for r in $(seq "$ROUNDS"); do
		pair 2 "$c" "warm-c$c-r$r" >/dev/null
		read -r a b < <(pair "$DURATION" "$c" "c$c-r$r")
		ratio=$(awk -v a="$a" -v b="$b" 'BEGIN{printf "%.3f", b/a}')
		ratios+=("$ratio")
		echo "c=$c round $r: plain $a req/s, controlled $b req/s, ratio $ratio"
	done
	median=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{v[NR]=$1} END{print (NR%2)?v[(NR+1)/2]:(v[NR/2]+v[NR/2+1])/2}')
	echo "c=$c: median ratio controlled/plain $median over $ROUNDS rounds (range $(printf '%s\n' "${ratios[@]}" | sort -n | sed -n '1p;$p' | paste -sd-))"
done
