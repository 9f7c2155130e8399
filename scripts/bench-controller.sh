#!/usr/bin/env bash
# Benchmarks HAProxy driven by `spillway controller` against plain HAProxy
# with the shared harness (../shared/bench/run.sh), in the same run:
# issue 13's "the controller adds nothing per request". See
# docs/BENCHMARKS.md, "HAProxy driven by the controller".
#
# Usage (from anywhere; needs go, haproxy, wrk, curl, taskset and the
# harness's tools):
#   ./scripts/bench-controller.sh        # ~5 min: haproxy and custom, c=64 and 256, 3 rounds
#
# The harness starts two upstreams (127.0.0.1:9001, :9002) and each proxy in
# turn. `haproxy` is its own plain configuration (../shared/bench/configs/
# haproxy.cfg). `custom` is HAProxy on the configuration that `spillway
# controller --print-haproxy-config` prints for the two upstreams (the share
# map looked up on every request; empty, as while nothing is shed; health
# checks on), with the controller running beside it and driving it through the
# Runtime API from the checks of a balancer whose lb: section is written
# below (the upstreams have no /readyz or /health, so both paths point at
# their /__stats, as in bench-lb.sh). HAProxy is exec'd in the harness's
# process, so the harness's CPU figures are HAProxy's own; the controller
# is stopped when HAProxy exits. The harness's knobs (TARGETS, CONNS,
# ROUNDS, PIN, ...) pass through.
#
# Environment (defaults in brackets):
#   BIN [/tmp/spillway-bench-ctl]  BENCH [<repo>/../shared/bench]  OUT [a new temp dir]
#   ADMIN_ADDR [127.0.0.1:18087]
# Only 127.0.0.1 is used; every process is stopped by PID.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
BIN=${BIN:-/tmp/spillway-bench-ctl}
BENCH=${BENCH:-$(cd "$ROOT/../shared/bench" 2>/dev/null && pwd || echo "$ROOT/../shared/bench")}
OUT=${OUT:-$(mktemp -d /tmp/bench-ctl.XXXXXX)}
ADMIN_ADDR=${ADMIN_ADDR:-127.0.0.1:18087}
export SPILLWAY_ADMIN_TOKEN=${SPILLWAY_ADMIN_TOKEN:-bench-admin-token-not-secret}
case $ADMIN_ADDR in 127.0.0.1:*) ;; *) echo "bench-controller: ADMIN_ADDR must be on 127.0.0.1" >&2; exit 2 ;; esac
for t in go haproxy wrk curl taskset; do
	command -v "$t" >/dev/null || { echo "bench-controller: $t not found" >&2; exit 2; }
done
mkdir -p "$OUT"
echo "== build $BIN" >&2
CGO_ENABLED=0 go build -o "$BIN" ./cmd/spillway

cfg=$OUT/controller.yaml
cat >"$cfg" <<EOF
# Written by scripts/bench-controller.sh: the balancer whose decisions
# the controller applies to HAProxy. Defaults unless noted.
lb:
  admin_listen: $ADMIN_ADDR
  health_check:
    ready_path: /__stats     # the bench upstream has no /readyz: 200 + JSON
    report_path: /__stats    # decodes as an empty report: no vote, limit unknown
  routes:
    - prefix: /              # every path needs "backend": the map is looked up per request
      dependencies: [backend]
EOF

# The custom target: print HAProxy's configuration for the harness's port
# and upstreams, start the controller once HAProxy's socket exists (and stop
# it when HAProxy exits), then become HAProxy.
wrapper=$OUT/controlled-haproxy.sh
cat >"$wrapper" <<EOF
#!/usr/bin/env bash
set -euo pipefail
d=\$(mktemp -d "$OUT/run.XXXXXX")
IFS=, read -r up1 up2 <<<"\$BENCH_UPSTREAMS"
args=(--config "$cfg" --haproxy-socket "\$d/haproxy.sock" --haproxy-map "\$d/routes.map"
	--instance "\$up1=\$up1" --instance "\$up2=\$up2")
"$BIN" controller --print-haproxy-config --listen "127.0.0.1:\$BENCH_PORT" "\${args[@]}" >"\$d/haproxy.cfg"
: >"\$d/routes.map"
haproxy -c -q -f "\$d/haproxy.cfg"
me=\$\$
(
	for _ in \$(seq 100); do [ -S "\$d/haproxy.sock" ] && break; sleep 0.05; done
	"$BIN" controller "\${args[@]}" --admin-listen "$ADMIN_ADDR" --log-level warn >"\$d/controller.log" 2>&1 &
	c=\$!
	while kill -0 "\$me" 2>/dev/null; do sleep 0.5; done
	kill -TERM "\$c" 2>/dev/null || true
	wait "\$c" 2>/dev/null || true
) </dev/null >/dev/null 2>&1 &
exec haproxy -db -f "\$d/haproxy.cfg"
EOF
chmod +x "$wrapper"
echo "== custom: $wrapper (controller config $cfg)" >&2
TARGETS=${TARGETS:-"haproxy custom"} CONNS=${CONNS:-"64 256"} ROUNDS=${ROUNDS:-3} PIN=${PIN:-1} \
	CUSTOM_CMD="$wrapper" "$BENCH/run.sh"
