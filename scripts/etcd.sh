#!/usr/bin/env bash
# Prints the path of an etcd server binary for the `serve --etcd` tests, installing one if
# none is on PATH: Debian's `etcd-server` package (etcd 3.4, the v3 API), fetched with
# apt-get download and unpacked with dpkg -x into .tools/etcd/ (git-ignored), so no system
# state changes beyond apt's package lists. Usage: SHOAL_ETCD=$(scripts/etcd.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deb.sh

if command -v etcd >/dev/null 2>&1; then
  command -v etcd
  exit 0
fi

dest=$PWD/.tools/etcd
bin=$dest/usr/bin/etcd
if [[ ! -x $bin ]]; then
  echo "scripts/etcd.sh: installing Debian's etcd-server into $dest" >&2
  unpack_deb etcd-server "$dest"
fi
"$bin" --version >/dev/null 2>&1 || { echo "scripts/etcd.sh: $bin does not run" >&2; exit 1; }
echo "$bin"
