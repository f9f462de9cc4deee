#!/usr/bin/env bash
# Prints the path of a kubectl for the kube-emulator tests (tests/kube-emulator), installing one
# if none is on PATH: Debian's `kubernetes-client` package, fetched with apt-get download and
# unpacked with dpkg -x into .tools/kubectl/ (git-ignored), so no system state changes beyond
# apt's package lists. Usage: SHOAL_KUBECTL=$(scripts/kubectl.sh)
# SHOAL_KUBECTL_DEBIAN=1 forces the Debian one even when another kubectl is on PATH (to test
# against the version CI gets).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deb.sh

if [[ -z ${SHOAL_KUBECTL_DEBIAN:-} ]] && command -v kubectl >/dev/null 2>&1; then
  command -v kubectl
  exit 0
fi

dest=$PWD/.tools/kubectl
bin=$dest/usr/bin/kubectl
if [[ ! -x $bin ]]; then
  echo "scripts/kubectl.sh: installing Debian's kubernetes-client into $dest" >&2
  unpack_deb kubernetes-client "$dest"
fi
"$bin" version --client >/dev/null 2>&1 || { echo "scripts/kubectl.sh: $bin does not run" >&2; exit 1; }
echo "$bin"
