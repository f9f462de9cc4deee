#!/usr/bin/env bash
# Deletes the two kind clusters up.sh made (shoal-east, shoal-west). The shared root in
# deploy/multicluster/.ca stays (delete it to start over with new keys).
set -euo pipefail
command -v kind >/dev/null 2>&1 || {
  echo "down.sh: missing: kind (https://kind.sigs.k8s.io/docs/user/quick-start/#installation)" >&2
  exit 1
}
for c in shoal-east shoal-west; do
  if kind get clusters 2>/dev/null | grep -qx "$c"; then
    kind delete cluster --name "$c"
  else
    echo "down.sh: no kind cluster named $c" >&2
  fi
done
