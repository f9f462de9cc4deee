#!/usr/bin/env bash
# Two kind clusters, `shoal-east` and `shoal-west`, each on a network of its own with an
# east-west gateway, each running its own shoal group (deploy/kind's install, a plug-in CA
# from one shared root), federated both ways; then helloworld split across them (v1 in
# east, v2 in west) called from west, and a failover: v2 scaled to zero, west's calls go to
# east; back to one.
#
#   deploy/multicluster/up.sh
#   SHOAL_SKIP_BUILD=1 deploy/multicluster/up.sh   # use the shoal:dev image docker has
#
# Needs docker, kind, kubectl and openssl, and a machine that can run eight kind nodes;
# deploy/multicluster/down.sh deletes both clusters.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
clusters=(east west)
ns=istio-system

say() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'up.sh: %s\n' "$*" >&2; exit 1; }

missing=()
for tool in docker kind kubectl openssl; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ "${#missing[@]}" -gt 0 ]; then
  die "missing: ${missing[*]} (install them first: https://docs.docker.com/get-docker/, \
https://kind.sigs.k8s.io/docs/user/quick-start/#installation, \
https://kubernetes.io/docs/tasks/tools/, your distribution's openssl)"
fi
docker info >/dev/null 2>&1 || die "docker is installed but its daemon does not answer (is it running, and may you use it?)"

k() { local c=$1; shift; kubectl --context "kind-shoal-$c" "$@"; }
other() { [ "$1" = east ] && echo west || echo east; }

# One root for both clusters, an intermediate each (kept across runs).
cadir="$here/.ca"
"$root/scripts/shared-root.sh" "$cadir" "${clusters[@]}"

built=
for c in "${clusters[@]}"; do
  if ! kind get clusters 2>/dev/null | grep -qx "shoal-$c"; then
    say "Creating the kind cluster shoal-$c"
    kind create cluster --name "shoal-$c" --config "$root/deploy/kind/kind-cluster.yaml" --wait 180s
  fi
  k "$c" apply -f "$root/deploy/kind/00-namespace.yaml"
  if ! k "$c" -n "$ns" get secret cacerts >/dev/null 2>&1; then
    say "shoal-$c: the plug-in CA (an intermediate of the shared root)"
    k "$c" -n "$ns" create secret generic cacerts \
      --from-file=ca-cert.pem="$cadir/$c/ca-cert.pem" \
      --from-file=ca-key.pem="$cadir/$c/ca-key.pem" \
      --from-file=root-cert.pem="$cadir/$c/root-cert.pem" \
      --from-file=cert-chain.pem="$cadir/$c/cert-chain.pem"
  fi
  say "shoal-$c: installing shoal (deploy/kind/up.sh)"
  SHOAL_KIND_CLUSTER="shoal-$c" SHOAL_SKIP_BUILD="${SHOAL_SKIP_BUILD:-$built}" "$root/deploy/kind/up.sh"
  built=1
  k "$c" apply -f "$here/federation.yaml" -f "$here/eastwest-gateway.yaml"
done

# Each cluster's node address: NodePorts 30012 (federation) and 31443 (east-west gateway).
declare -A node
for c in "${clusters[@]}"; do
  node[$c]=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "shoal-$c-control-plane")
  [ -n "${node[$c]}" ] || die "no address for shoal-$c's nodes"
done

for c in "${clusters[@]}"; do
  o=$(other "$c")
  say "shoal-$c: cluster $c on network net-$c, federated with $o"
  k "$c" -n "$ns" label service istio-eastwestgateway "topology.istio.io/network=net-$c" --overwrite
  k "$c" -n "$ns" set env deployment/istio-eastwestgateway \
    "ISTIO_META_CLUSTER_ID=$c" "ISTIO_META_NETWORK=net-$c"
  # The flags federation adds to the replicas' command line (once: a re-run replaces them).
  args=$(k "$c" -n "$ns" get statefulset shoal -o jsonpath='{.spec.template.spec.containers[0].args}')
  case "$args" in
    *--federate=*) ;;
    *)
      k "$c" -n "$ns" patch statefulset shoal --type json -p "[
        {\"op\":\"add\",\"path\":\"/spec/template/spec/containers/0/args/-\",\"value\":\"--cluster-id=$c\"},
        {\"op\":\"add\",\"path\":\"/spec/template/spec/containers/0/args/-\",\"value\":\"--network=net-$c\"},
        {\"op\":\"add\",\"path\":\"/spec/template/spec/containers/0/args/-\",\"value\":\"--federation-peers=istio-system/shoal\"},
        {\"op\":\"add\",\"path\":\"/spec/template/spec/containers/0/args/-\",\"value\":\"--federate=$o=${node[$o]}:30012\"},
        {\"op\":\"add\",\"path\":\"/spec/template/spec/containers/0/args/-\",\"value\":\"--network-gateway=net-$o=${node[$o]}:31443\"}
      ]"
      ;;
  esac
  k "$c" -n "$ns" rollout status statefulset/shoal --timeout=300s
  k "$c" -n "$ns" rollout status deployment/istio-eastwestgateway --timeout=180s
done

say "Sample: helloworld v1 in east, v2 in west, called from west"
for c in "${clusters[@]}"; do
  k "$c" apply -f "$here/sample.yaml"
done
k east apply -f "$here/helloworld-v1.yaml"
k west apply -f "$here/helloworld-v2.yaml"
k east -n sample rollout status deployment/helloworld-v1 --timeout=180s
k west -n sample rollout status deployment/helloworld-v2 --timeout=180s
k west -n sample rollout status deployment/sleep --timeout=180s

calls() {
  local out=""
  for _ in $(seq 20); do
    out+=$(k west -n sample exec deploy/sleep -c sleep -- curl -sS --max-time 3 http://helloworld:5000/hello 2>/dev/null || true)
    out+=$'\n'
  done
  printf '%s' "$out"
}
seen=""
for _ in $(seq 30); do
  seen=$(calls)
  if grep -q 'version: v1' <<<"$seen" && grep -q 'version: v2' <<<"$seen"; then break; fi
  sleep 2
done
grep -q 'version: v1' <<<"$seen" || die "west never reached v1 in east through east's gateway:
$seen"
grep -q 'version: v2' <<<"$seen" || die "west never reached its own v2:
$seen"
echo "west -> helloworld: v1 (east, through its east-west gateway) and v2 (west)" >&2

say "Failover: v2 scaled to zero, west's calls go to east"
k west -n sample scale deployment/helloworld-v2 --replicas=0
for _ in $(seq 30); do
  seen=$(calls)
  if ! grep -q 'version: v2' <<<"$seen" && grep -q 'version: v1' <<<"$seen"; then break; fi
  sleep 2
done
grep -q 'version: v2' <<<"$seen" && die "calls still reach v2 after it scaled to zero"
grep -q 'version: v1' <<<"$seen" || die "with v2 gone, west reaches nothing"
echo "only v1 (east) answers" >&2
k west -n sample scale deployment/helloworld-v2 --replicas=1

say "Done"
cat >&2 <<EOT
kubectl contexts: kind-shoal-east, kind-shoal-west
  kubectl --context kind-shoal-west get --raw /api/v1/namespaces/$ns/pods/shoal-0:15014/proxy/debug/configz
Delete both clusters with deploy/multicluster/down.sh.
EOT
