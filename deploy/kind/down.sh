#!/usr/bin/env bash
# Deletes the kind cluster up.sh made (SHOAL_KIND_CLUSTER, default `shoal`), and with it
# everything installed there. The shoal:dev image stays in docker.
set -euo pipefail

cluster=${SHOAL_KIND_CLUSTER:-shoal}
command -v kind >/dev/null 2>&1 || {
  echo "down.sh: missing: kind (https://kind.sigs.k8s.io/docs/user/quick-start/#installation)" >&2
  exit 1
}
if kind get clusters 2>/dev/null | grep -qx "$cluster"; then
  kind delete cluster --name "$cluster"
else
  echo "down.sh: no kind cluster named $cluster" >&2
fi
