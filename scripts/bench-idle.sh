#!/usr/bin/env bash
# Idle keep-alive connections (issue 16): N idle client connections held
# open on `spillway lb` (every feature on, scripts/bench-lb.sh's config) and
# on HAProxy (the harness's haproxy.cfg, nbthread 1), each in front of the
# harness's two upstreams: the proxy's resident memory with them, and the
# req/s of CONNS active connections (wrk) with and without them beside.
#
# Layout as the harness's pinned one: wrk and the idle client on WRK_CPU,
# the proxy and upstreams on LB_CPU (GOMAXPROCS=1). Per round and proxy:
# wrk alone; then N connections opened (scripts/candidates/idleconns: one
# request answered on each, then idle), VmRSS read, wrk again beside them;
# then they are closed. ROUNDS rounds, the proxies interleaved; medians.
#
# Usage: ./scripts/bench-idle.sh        (~1 min per round)
# Environment [defaults]: N [10000] CONNS [64] DURATION [10] ROUNDS [3]
#   PROXIES ["spillway haproxy"] WRK_CPU [0] LB_CPU [1]
#   BIN [/tmp/spillway-bench] NOBUILD [""] OUT [a new temp dir]
# Ports: upstreams 9001, 9002; spillway 8121 (admin 18090); HAProxy 8122.
# Needs a descriptor limit above N + 2000, and 2N + 2000 for HAProxy (raised
# here where the hard limit allows). Only 127.0.0.1 is
# used; every process this script starts is stopped by PID.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
BENCH=${BENCH:-$(cd "$ROOT/../shared/bench" 2>/dev/null && pwd || echo "$ROOT/../shared/bench")}
OUT=${OUT:-$(mktemp -d /tmp/bench-idle.XXXXXX)}
BIN=${BIN:-/tmp/spillway-bench}
N=${N:-10000}
PROXIES=${PROXIES:-spillway haproxy}
export SPILLWAY_ADMIN_TOKEN=${SPILLWAY_ADMIN_TOKEN:-bench-admin-token-not-secret}
for t in go wrk curl taskset timeout haproxy; do
	command -v "$t" >/dev/null || { echo "bench-idle: $t not found" >&2; exit 2; }
done
# HAProxy sizes its descriptors at two per connection: raise the limit if
# we may; HAProxy is left out where it stays below 2N+2000.
ulimit -n $((2 * N + 4000)) 2>/dev/null || true
(($(ulimit -n) > N + 2000)) || { echo "bench-idle: ulimit -n $(ulimit -n) is below N+2000" >&2; exit 2; }
if [[ " $PROXIES " == *" haproxy "* ]] && (($(ulimit -n) <= 2 * N + 2000)); then
	echo "bench-idle: ulimit -n $(ulimit -n) is below 2N+2000, which HAProxy needs: HAProxy left out" >&2
	PROXIES=${PROXIES//haproxy/}
fi
. "$ROOT/scripts/pids.sh" # pids, stop_all
trap stop_all EXIT
trap 'exit 130' INT TERM
wrk_cpu=${WRK_CPU:-0} lb_cpu=${LB_CPU:-1} dur=${DURATION:-10} conns=${CONNS:-64}
on_lb=(nice -n -10 taskset -c "$lb_cpu")
on_wrk=(nice -n -10 taskset -c "$wrk_cpu")

echo "== build, results in $OUT" >&2
[ -n "${NOBUILD:-}" ] || CGO_ENABLED=0 go build -o "$BIN" ./cmd/spillway
(cd "$BENCH/upstream" && GOTOOLCHAIN=local CGO_ENABLED=0 go build -o "$OUT/upstream" .)
(cd scripts/candidates && CGO_ENABLED=0 go build -o "$OUT/idleconns" ./idleconns)
sed -n '/^write_config() {/,/^}/p' scripts/bench-lb.sh >"$OUT/write_config.sh"
. "$OUT/write_config.sh"
ADMIN_ADDR=127.0.0.1:18090 write_config "$OUT/lb.yaml" 127.0.0.1:9001 127.0.0.1:9002
# The default connection cap is half the descriptor limit (connlimit):
# room for the idle ones and the active ones, as an operator expecting
# them would set it.
printf '  server:\n    max_connections: %d\n' $((N + 1000)) >>"$OUT/lb.yaml"
for port in 9001 9002; do
	"${on_lb[@]}" env GOMAXPROCS=1 "$OUT/upstream" -port "$port" >"$OUT/upstream-$port.log" 2>&1 &
	pids+=($!)
done
declare -A pid port
port[spillway]=8121 port[haproxy]=8122
"${on_lb[@]}" env GOMAXPROCS=1 "$BIN" lb --config "$OUT/lb.yaml" --listen 127.0.0.1:8121 --log-level warn >"$OUT/spillway.log" 2>&1 &
pids+=($!)
pid[spillway]=$!
sed "s/@PORT@/8122/g; s/@WORKERS@/1/g; s/@UP1@/127.0.0.1:9001/; s/@UP2@/127.0.0.1:9002/" \
	"$BENCH/configs/haproxy.cfg" >"$OUT/haproxy.cfg"
sed -i "s/maxconn 8000/maxconn $((N + 2000))/" "$OUT/haproxy.cfg"
if [[ " $PROXIES " == *" haproxy "* ]]; then
	"${on_lb[@]}" haproxy -db -f "$OUT/haproxy.cfg" >"$OUT/haproxy.log" 2>&1 &
	pids+=($!)
	pid[haproxy]=$!
fi
for p in $PROXIES; do
	for i in $(seq 100); do
		curl -fs -o /dev/null --max-time 1 "http://127.0.0.1:${port[$p]}/" && break
		((i < 100)) || { echo "bench-idle: no 200 from $p" >&2; exit 1; }
		sleep 0.1
	done
done
sleep 10 # spillway's slow start (10 s) ends

rss() { awk '/^VmRSS/{print $2}' "/proc/$1/status"; }
run_wrk() { # PROXY TAG: prints req/s
	timeout $((dur + 30)) "${on_wrk[@]}" wrk -t1 -c"$conns" -d"${dur}s" "http://127.0.0.1:${port[$1]}/" >"$OUT/$2.txt"
	if grep -qE 'Non-2xx|Socket errors' "$OUT/$2.txt"; then
		echo "bench-idle: errors or non-2xx ($2):" >&2
		cat "$OUT/$2.txt" >&2
		exit 1
	fi
	awk '/Requests\/sec/{print $2}' "$OUT/$2.txt"
}
echo "== $N idle connections, wrk -c$conns for ${dur}s, ${ROUNDS:-3} rounds"
for ((r = 1; r <= ${ROUNDS:-3}; r++)); do
	for p in $PROXIES; do
		timeout 15 "${on_wrk[@]}" wrk -t1 -c"$conns" -d2s "http://127.0.0.1:${port[$p]}/" >/dev/null
		rss0=$(rss "${pid[$p]}")
		alone=$(run_wrk "$p" "$p-alone-r$r")
		"${on_wrk[@]}" "$OUT/idleconns" -addr "127.0.0.1:${port[$p]}" -n "$N" -hold 10m >"$OUT/$p-idle-r$r.log" 2>&1 &
		ic=$!
		pids+=($ic)
		for i in $(seq 600); do
			grep -q '^ready' "$OUT/$p-idle-r$r.log" && break
			((i < 600)) || { echo "bench-idle: the idle client did not get ready" >&2; exit 1; }
			sleep 0.1
		done
		sleep 1
		rss1=$(rss "${pid[$p]}")
		beside=$(run_wrk "$p" "$p-beside-r$r")
		rss2=$(rss "${pid[$p]}")
		kill -TERM "$ic"
		wait "$ic" || true
		sleep 2 # the proxy sees the closes
		echo "$p $r $alone $beside $rss0 $rss1 $rss2 $(head -1 "$OUT/$p-idle-r$r.log" | tr ' ' _)" >>"$OUT/idle.txt"
		printf 'round %d %-8s alone %6.0f req/s, beside %d idle %6.0f req/s (%.3f); RSS %d MB before, %d MB with them, %d MB after the run (%s)\n' \
			"$r" "$p" "$alone" "$N" "$beside" "$(awk -v a="$alone" -v b="$beside" 'BEGIN{print b/a}')" \
			$((rss0 / 1024)) $((rss1 / 1024)) $((rss2 / 1024)) "$(head -1 "$OUT/$p-idle-r$r.log")"
	done
done
echo "== medians"
sort -k1,1 "$OUT/idle.txt" | awk '
	function med(a, m,   x, y, j) { for (x = 2; x <= m; x++) { y = a[x]; for (j = x - 1; j >= 1 && a[j] > y; j--) a[j + 1] = a[j]; a[j + 1] = y }
		return m % 2 ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2 }
	{ k = $1; if (!(k in n)) order[++K] = k; i = ++n[k]; R[k, i] = $4 / $3; M[k, i] = ($6 > $7 ? $6 : $7) / 1024; A[k, i] = $3; B[k, i] = $4 }
	END { for (q = 1; q <= K; q++) { k = order[q]; m = n[k]
		for (i = 1; i <= m; i++) { a1[i] = R[k, i]; a2[i] = M[k, i]; a3[i] = A[k, i]; a4[i] = B[k, i] }
		printf "%-8s beside/alone %.3f  alone %.0f req/s  beside %.0f req/s  RSS with the idle connections %.0f MB (n=%d)\n", k, med(a1, m), med(a3, m), med(a4, m), med(a2, m), m } }'
