# Sourced by scripts/kubectl.sh and scripts/etcd.sh: unpack_deb PACKAGE DEST fetches a
# Debian package with apt-get download and unpacks it with dpkg -x into DEST (git-ignored
# .tools/), so no system state changes beyond apt's package lists.
unpack_deb() {
  local package=$1 dest=$2
  _deb_tmp=$(mktemp -d)
  trap 'rm -rf "$_deb_tmp"' EXIT
  local tmp=$_deb_tmp
  # apt-get download needs the package lists; fetch them once if this machine has none.
  if ! (cd "$tmp" && apt-get download "$package" >/dev/null 2>&1); then
    apt-get update -qq >&2
    (cd "$tmp" && apt-get download "$package" >&2)
  fi
  mkdir -p "$dest"
  dpkg -x "$tmp/${package}"_*.deb "$dest"
}
