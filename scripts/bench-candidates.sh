#!/usr/bin/env bash
# Measures data-plane candidates side by side with HAProxy, paired: each
# candidate and HAProxy are loaded AT THE SAME TIME, by two wrk processes
# with the same number of connections, while both proxies and the
# harness's two upstreams share one CPU (LB_CPU; GOMAXPROCS=1, HAProxy
# nbthread 1) and wrk runs on another (WRK_CPU). Their req/s ratio is then
# the inverse ratio of their CPU per request, whatever the shared VM does
# meanwhile; each proxy's own CPU per request is also read from
# /proc/PID/stat over the recorded run. See docs/BENCHMARKS.md, "Data
# plane" (issue 16).
#
# Candidates (CANDIDATES, default all):
#   spillway    `spillway lb`, every feature on (scripts/bench-lb.sh's config), BIN
#   spillway0   the same with another build, BIN0 (not in the default list): an A/B
#   naive       the harness's httputil.ReverseProxy baseline (naiveproxy/)
#   rp          ReverseProxy with pooled copy buffers over http.Transport (scripts/candidates/rp)
#   rpsync      the same ReverseProxy over a synchronous RoundTripper (scripts/candidates/rpsync)
#   transport   net/http server + http.Transport, no ReverseProxy (scripts/candidates/transport)
#   leanclient  net/http server + a hand-written upstream client (scripts/candidates/leanclient)
#   fasthttp    valyala/fasthttp server + HostClient (scripts/candidates/fasthttp)
#   raw         a hand-written HTTP/1.1 core on both sides (scripts/candidates/raw)
#
# Usage: ./scripts/bench-candidates.sh     (~1 min per candidate and round)
# Environment [defaults]: CANDIDATES ["spillway naive rp rpsync transport
#   leanclient fasthttp raw"] ROUNDS [3] CONNS ["64 256"] DURATION [8] WRK_CPU [0]
#   LB_CPU [1] BIN [/tmp/spillway-bench] NOBUILD [""] OUT [a new temp dir]
# Ports: upstreams 9001, 9002; HAProxy 8101; candidates 8111...; the
# spillway candidate's admin 18089. Only 127.0.0.1 is used; every process
# this script starts is stopped by PID.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
BENCH=${BENCH:-$(cd "$ROOT/../shared/bench" 2>/dev/null && pwd || echo "$ROOT/../shared/bench")}
OUT=${OUT:-$(mktemp -d /tmp/bench-cand.XXXXXX)}
BIN=${BIN:-/tmp/spillway-bench}
BIN0=${BIN0:-/tmp/spillway-bench0}
CANDIDATES=${CANDIDATES:-spillway naive rp rpsync transport leanclient fasthttp raw}
export SPILLWAY_ADMIN_TOKEN=${SPILLWAY_ADMIN_TOKEN:-bench-admin-token-not-secret}
for t in go wrk curl taskset timeout haproxy; do
	command -v "$t" >/dev/null || { echo "bench-candidates: $t not found" >&2; exit 2; }
done
. "$ROOT/scripts/pids.sh" # pids, stop_all
trap stop_all EXIT
trap 'exit 130' INT TERM

wrk_cpu=${WRK_CPU:-0} lb_cpu=${LB_CPU:-1} dur=${DURATION:-8}
on_lb=(nice -n -10 taskset -c "$lb_cpu")
on_wrk=(nice -n -10 taskset -c "$wrk_cpu")
ups=127.0.0.1:9001,127.0.0.1:9002

echo "== build, results in $OUT" >&2
[ -n "${NOBUILD:-}" ] || CGO_ENABLED=0 go build -o "$BIN" ./cmd/spillway
(cd "$BENCH/upstream" && GOTOOLCHAIN=local CGO_ENABLED=0 go build -o "$OUT/upstream" .)
(cd "$BENCH/naiveproxy" && GOTOOLCHAIN=local CGO_ENABLED=0 go build -o "$OUT/naive" .)
for c in rp rpsync transport leanclient fasthttp raw; do
	(cd scripts/candidates && CGO_ENABLED=0 go build -o "$OUT/$c" "./$c")
done
# The lb section of scripts/bench-lb.sh, every feature on.
sed -n '/^write_config() {/,/^}/p' scripts/bench-lb.sh >"$OUT/write_config.sh"
. "$OUT/write_config.sh"
ADMIN_ADDR=127.0.0.1:18089 write_config "$OUT/lb.yaml" 127.0.0.1:9001 127.0.0.1:9002
ADMIN_ADDR=127.0.0.1:18099 write_config "$OUT/lb0.yaml" 127.0.0.1:9001 127.0.0.1:9002

for port in 9001 9002; do
	"${on_lb[@]}" env GOMAXPROCS=1 "$OUT/upstream" -port "$port" >"$OUT/upstream-$port.log" 2>&1 &
	pids+=($!)
done
sed "s/@PORT@/8101/g; s/@WORKERS@/1/g; s/@UP1@/127.0.0.1:9001/; s/@UP2@/127.0.0.1:9002/" \
	"$BENCH/configs/haproxy.cfg" >"$OUT/haproxy.cfg"
"${on_lb[@]}" haproxy -db -f "$OUT/haproxy.cfg" >"$OUT/haproxy.log" 2>&1 &
pids+=($!)
declare -A pid port
pid[haproxy]=$!
port[haproxy]=8101
p=8111
for c in $CANDIDATES; do
	case $c in
	spillway) cmd=("$BIN" lb --config "$OUT/lb.yaml" --listen 127.0.0.1:$p --log-level warn) ;;
	spillway0) cmd=("$BIN0" lb --config "$OUT/lb0.yaml" --listen 127.0.0.1:$p --log-level warn) ;;
	naive) cmd=("$OUT/naive" -listen 127.0.0.1 -port $p -upstreams "$ups") ;;
	*) cmd=("$OUT/$c" -listen 127.0.0.1:$p -backends "$ups") ;;
	esac
	"${on_lb[@]}" env GOMAXPROCS=1 "${cmd[@]}" >"$OUT/$c.log" 2>&1 &
	pids+=($!)
	pid[$c]=$!
	port[$c]=$p
	p=$((p + 1))
done
for c in haproxy $CANDIDATES; do
	for i in $(seq 100); do
		curl -fs -o /dev/null --max-time 1 "http://127.0.0.1:${port[$c]}/" && break
		((i < 100)) || { echo "bench-candidates: no 200 from $c" >&2; cat "$OUT/$c.log" >&2; exit 1; }
		sleep 0.1
	done
done
sleep 10 # spillway's slow start (10 s) ends

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
# pair SECS CONNS TAG CAND: HAProxy and CAND at once; prints
# "rps_haproxy rps_cand us_haproxy us_cand".
pair() {
	local secs=$1 conns=$2 tag=$3 c=$4 w t0h t0c t1h t1c side
	t0h=$(ticks "${pid[haproxy]}") t0c=$(ticks "${pid[$c]}")
	timeout $((secs + 30)) "${on_wrk[@]}" wrk -t1 -c"$conns" -d"${secs}s" "http://127.0.0.1:${port[haproxy]}/" >"$OUT/$tag-haproxy.txt" &
	w=$!
	timeout $((secs + 30)) "${on_wrk[@]}" wrk -t1 -c"$conns" -d"${secs}s" "http://127.0.0.1:${port[$c]}/" >"$OUT/$tag-$c.txt"
	wait "$w"
	t1h=$(ticks "${pid[haproxy]}") t1c=$(ticks "${pid[$c]}")
	for side in haproxy "$c"; do
		[[ $tag != warm-* ]] || continue
		if grep -qE 'Non-2xx|Socket errors' "$OUT/$tag-$side.txt"; then
			echo "bench-candidates: errors or non-2xx answers ($side, $tag):" >&2
			cat "$OUT/$tag-$side.txt" >&2
			exit 1
		fi
	done
	local rh rc nh nc
	rh=$(awk '/Requests\/sec/{print $2}' "$OUT/$tag-haproxy.txt")
	rc=$(awk '/Requests\/sec/{print $2}' "$OUT/$tag-$c.txt")
	nh=$(awk '/requests in/{print $1}' "$OUT/$tag-haproxy.txt")
	nc=$(awk '/requests in/{print $1}' "$OUT/$tag-$c.txt")
	awk -v rh="$rh" -v rc="$rc" -v dh=$((t1h - t0h)) -v dc=$((t1c - t0c)) -v nh="$nh" -v nc="$nc" -v hz="$hz" \
		'BEGIN{printf "%s %s %.1f %.1f\n", rh, rc, dh/hz*1e6/nh, dc/hz*1e6/nc}'
}
echo "== ${ROUNDS:-3} rounds of ${dur}s, paired with HAProxy"
for ((r = 1; r <= ${ROUNDS:-3}; r++)); do
	for c in $CANDIDATES; do
		for n in ${CONNS:-64 256}; do
			pair 2 "$n" "warm-$c-c$n-r$r" "$c" >/dev/null
			read -r a b ua ub < <(pair "$dur" "$n" "$c-c$n-r$r" "$c")
			echo "$c $n $r $a $b $ua $ub" >>"$OUT/pairs.txt"
			printf 'round %d %-10s c=%-3d haproxy %6.0f req/s %5.1f us/req | %-10s %6.0f req/s %5.1f us/req | ratio %.3f\n' \
				"$r" "$c" "$n" "$a" "$ua" "$c" "$b" "$ub" "$(awk -v a="$a" -v b="$b" 'BEGIN{print b/a}')"
		done
	done
done
echo "== medians (ratio = candidate req/s / HAProxy req/s in the same pair)"
sort -k1,1 -k2,2n "$OUT/pairs.txt" | awk '
	function med(a, m,   x, y, j) { for (x = 2; x <= m; x++) { y = a[x]; for (j = x - 1; j >= 1 && a[j] > y; j--) a[j + 1] = a[j]; a[j + 1] = y }
		return m % 2 ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2 }
	{ k = $1 " c=" $2; if (!(k in n)) order[++K] = k; i = ++n[k]; R[k, i] = $5 / $4; H[k, i] = $6; C[k, i] = $7 }
	END { for (q = 1; q <= K; q++) { k = order[q]; m = n[k]
		for (i = 1; i <= m; i++) { a1[i] = R[k, i]; a2[i] = H[k, i]; a3[i] = C[k, i] }
		printf "%-18s ratio %.3f  cpu/req: candidate %5.1f us, haproxy %5.1f us (n=%d)\n", k, med(a1, m), med(a3, m), med(a2, m), m } }'
