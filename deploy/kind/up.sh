#!/usr/bin/env bash
# Installs shoal (three replicas) into a local kind cluster and shows traffic flowing
# between two demo workloads. Safe to run again: the cluster, the CA and the demo are
# reused, and a rebuilt image rolls the replicas.
#
#   deploy/kind/up.sh                  # cluster `shoal`
#   SHOAL_KIND_CLUSTER=mesh deploy/kind/up.sh
#   SHOAL_SKIP_BUILD=1 deploy/kind/up.sh   # use the shoal:dev image docker has
#
# Needs docker, kind and kubectl; deploy/kind/down.sh deletes the cluster.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cluster=${SHOAL_KIND_CLUSTER:-shoal}
image=shoal:dev
ns=istio-system

say() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'up.sh: %s\n' "$*" >&2; exit 1; }

missing=()
for tool in docker kind kubectl; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ "${#missing[@]}" -gt 0 ]; then
  die "missing: ${missing[*]} (install them first: https://docs.docker.com/get-docker/, \
https://kind.sigs.k8s.io/docs/user/quick-start/#installation, \
https://kubernetes.io/docs/tasks/tools/)"
fi
docker info >/dev/null 2>&1 || die "docker is installed but its daemon does not answer (is it running, and may you use it?)"

k() { kubectl --context "kind-$cluster" "$@"; }

if kind get clusters 2>/dev/null | grep -qx "$cluster"; then
  say "Using the kind cluster $cluster"
else
  say "Creating the kind cluster $cluster (a control plane and three workers)"
  kind create cluster --name "$cluster" --config "$here/kind-cluster.yaml" --wait 180s
fi

built=false
if [ -z "${SHOAL_SKIP_BUILD:-}" ]; then
  say "Building $image"
  DOCKER_BUILDKIT=1 docker build --tag "$image" "$root"
  built=true
fi
docker image inspect "$image" >/dev/null 2>&1 || die "no $image image in docker (run without SHOAL_SKIP_BUILD)"
kind load docker-image "$image" --name "$cluster"

say "CustomResourceDefinitions, namespace, RBAC"
k apply -f "$here/00-namespace.yaml"
k apply -f "$here/10-crds.yaml"
k wait --for condition=established --timeout=60s crd -l app.kubernetes.io/part-of=shoal
k apply -f "$here/20-rbac.yaml"

# What is particular to this cluster. The CA is made once and kept: every certificate in
# the mesh chains to it.
if ! k -n "$ns" get secret cacerts >/dev/null 2>&1; then
  say "Creating the mesh CA (Secret $ns/cacerts)"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  # shoal makes its own root (a P-256 key, self-signed); as Istio's plugged-in layout it
  # signs directly, with an empty chain.
  docker run --rm --user "$(id -u):$(id -g)" --volume "$tmp:/ca" "$image" \
    ca bundle --ca-dir /ca/shoal >/dev/null
  : >"$tmp/cert-chain.pem"
  k -n "$ns" create secret generic cacerts \
    --from-file=ca-cert.pem="$tmp/shoal/shoal-root/root-cert.pem" \
    --from-file=ca-key.pem="$tmp/shoal/shoal-root/root-key.pem" \
    --from-file=root-cert.pem="$tmp/shoal/shoal-root/root-cert.pem" \
    --from-file=cert-chain.pem="$tmp/cert-chain.pem"
fi

say "shoal: Services, StatefulSet, disruption budget, webhooks"
existed=false
k -n "$ns" get statefulset shoal >/dev/null 2>&1 && existed=true
k apply -f "$here/30-service.yaml"
k apply -f "$here/40-statefulset.yaml"
k apply -f "$here/50-pdb.yaml"
k apply -f "$here/60-webhooks.yaml"
if $existed && $built; then
  # Same manifest, new image under the same tag: roll the replicas onto it.
  k -n "$ns" rollout restart statefulset/shoal
fi
k -n "$ns" rollout status statefulset/shoal --timeout=300s

say "Checking the shard group"
leaders=()
for i in 0 1 2; do
  admin="/api/v1/namespaces/$ns/pods/shoal-$i:15014/proxy"
  ready=$(k get --raw "$admin/ready" 2>&1) || die "shoal-$i is not ready: $ready"
  leader=""
  for _ in $(seq 30); do
    leader=$(k get --raw "$admin/debug/shardz" | sed -n 's/.*"leader":\([0-9][0-9]*\).*/\1/p') || true
    [ -n "$leader" ] && break
    sleep 1
  done
  [ -n "$leader" ] || die "shoal-$i sees no Raft leader (kubectl -n $ns logs shoal-$i)"
  echo "shoal-$i: ready, leader is replica $leader" >&2
  leaders+=("$leader")
done
if [ "${leaders[0]}" != "${leaders[1]}" ] || [ "${leaders[1]}" != "${leaders[2]}" ]; then
  die "the replicas disagree on the leader: ${leaders[*]}"
fi

say "Demo: client -> httpbin in namespace shoal-demo"
k apply -f "$here/demo.yaml"
k -n shoal-demo rollout status deployment/httpbin --timeout=180s
k -n shoal-demo rollout status deployment/client --timeout=180s
code=""
for _ in $(seq 30); do
  code=$(k -n shoal-demo exec deploy/client -c client -- \
    curl -sS -o /dev/null -w '%{http_code}' http://httpbin:8000/status/200 2>/dev/null) || true
  [ "$code" = 200 ] && break
  sleep 2
done
[ "$code" = 200 ] || die "client could not reach httpbin (last HTTP status: ${code:-none})"
echo "client -> http://httpbin:8000/status/200: HTTP $code" >&2

containers=$(k -n shoal-demo get pod -l app=client -o jsonpath='{.items[0].spec.containers[*].name}')
case " $containers " in
  *" istio-proxy "*)
    k get --raw "/api/v1/namespaces/$ns/pods/shoal-0:15014/proxy/debug/syncz?fleet=1" |
      grep -q '~client-[^.~]*\.shoal-demo~' || die "the client's sidecar is not connected to shoal"
    echo "the client's sidecar is connected to shoal: the request went through the mesh" >&2
    ;;
  *)
    die "no sidecar was injected into the client (kubectl -n $ns logs shoal-0 | grep -i inject)"
    ;;
esac

say "Done"
cat >&2 <<EOF
kubectl context: kind-$cluster
  kubectl -n $ns get pods,svc
  kubectl get --raw /api/v1/namespaces/$ns/pods/shoal-0:15014/proxy/debug/shardz
  kubectl get --raw /api/v1/namespaces/$ns/pods/shoal-0:15014/proxy/debug/configz
Delete everything with deploy/kind/down.sh.
EOF
