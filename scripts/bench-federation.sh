#!/usr/bin/env bash
# Federation figures (BENCHMARKS.md, "Federation"): two shoal groups on this machine whose
# plug-in CAs share a root. East serves its generated mesh (and its own fleet of simulated
# sidecars); west has the same Services without endpoints and imports east's. The load
# tester, attached to west with east's config directory, scales east's services and
# measures when the last of west's proxies holds each change (propagation east → west);
# then east restarts, and what it sends west's resumed federation stream is compared with
# its first push.
#
#   scripts/bench-federation.sh [PROXIES_EACH_SIDE] [SERVICES]
#
# Needs release binaries (cargo build --release -p shoal -p shoal-loadtest; BIN= to point
# elsewhere) and openssl. Loopback only; everything it starts stops when it exits.
set -euo pipefail

PROXIES=${1:-1000}
SERVICES=${2:-200}
BIN=${BIN:-target/release}
for b in shoal shoal-loadtest; do
  [ -x "$BIN/$b" ] || { echo "$BIN/$b not found: cargo build --release -p shoal -p shoal-loadtest (or BIN=...)" >&2; exit 2; }
done
command -v openssl >/dev/null || { echo "openssl is needed to make the shared root" >&2; exit 2; }

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# A common root and an intermediate per cluster, in Istio's cacerts layout.
"$(dirname "$0")/shared-root.sh" "$work/ca" east west
for c in east west; do ln -s "$work/ca/$c" "$work/ca-$c"; done

mesh=(--services "$SERVICES" --endpoints 5 --namespaces 10)
"$BIN/shoal-loadtest" gen --out "$work/east" "${mesh[@]}" >/dev/null
"$BIN/shoal-loadtest" gen --out "$work/west" --services "$SERVICES" --endpoints 0 --namespaces 10 >/dev/null

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
E_TLS=$(port); E_XDS=$(port); E_ADMIN=$(port); W_TLS=$(port); W_XDS=$(port); W_ADMIN=$(port)

start_east() {
  "$BIN/shoal" serve --config-dir "$work/east" --ca-dir "$work/ca-east" --data-dir "$work/data-east" \
    --cluster-id east --federation-peers istio-system/shoal \
    --xds-tls-addr "127.0.0.1:$E_TLS" --xds-addr "127.0.0.1:$E_XDS" --admin-addr "127.0.0.1:$E_ADMIN" \
    >>"$work/east.log" 2>&1 &
  pids+=($!)
}
ready() { for _ in $(seq 1 600); do curl -sf "http://$1/ready" >/dev/null && return 0; sleep 0.1; done; echo "not ready: $1" >&2; exit 1; }
fds_bytes() { curl -sf "http://127.0.0.1:$E_ADMIN/metrics" | awk '/^shoal_xds_pushed_bytes_total\{.*type="FDS"/ {s+=$2} END {print s+0}'; }

start_east
"$BIN/shoal" serve --config-dir "$work/west" --ca-dir "$work/ca-west" --data-dir "$work/data-west" \
  --cluster-id west --federate "east=127.0.0.1:$E_TLS" \
  --xds-tls-addr "127.0.0.1:$W_TLS" --xds-addr "127.0.0.1:$W_XDS" --admin-addr "127.0.0.1:$W_ADMIN" \
  >"$work/west.log" 2>&1 &
pids+=($!)
ready "127.0.0.1:$E_ADMIN"; ready "127.0.0.1:$W_ADMIN"
sleep 2
full=$(fds_bytes)

# East's own fleet, connected for the whole run.
"$BIN/shoal-loadtest" run connect --xds "127.0.0.1:$E_XDS" --admin "127.0.0.1:$E_ADMIN" \
  --config-dir "$work/east" --proxies "$PROXIES" "${mesh[@]}" --settle 600s --quiet >"$work/east-fleet.log" 2>&1 &
fleet=$!
pids+=($fleet)

echo "== propagation: a change in east's config → the last of west's $PROXIES proxies holds it"
"$BIN/shoal-loadtest" run churn --xds "127.0.0.1:$W_XDS" --admin "127.0.0.1:$W_ADMIN" \
  --config-dir "$work/east" --proxies "$PROXIES" "${mesh[@]}" --endpoint-churn \
  --changes 8 --change-interval 2s --settle 2s --quiet
echo "east's own fleet: $(curl -sf "http://127.0.0.1:$E_ADMIN/metrics" | awk '/^shoal_xds_connected_streams/ {s+=$2} END {print s+0}') streams connected to east during the run (its fleet and west's federation stream)"
kill "$fleet" 2>/dev/null || true

echo "== resume: east restarts; what it sends west's federation stream again"
kill "${pids[0]}"; wait "${pids[0]}" 2>/dev/null || true
start_east
ready "127.0.0.1:$E_ADMIN"
sleep 3
resumed=$(fds_bytes)
echo "first push to west: $full bytes; after east's restart: $resumed bytes"
grep -c "federation stream open" "$work/west.log" | sed 's/^/west federation streams opened: /'
