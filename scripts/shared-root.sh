#!/usr/bin/env bash
# A root CA and, for each cluster named, an intermediate it signed, in Istio's plug-in
# (`cacerts`) layout: DIR/CLUSTER/{ca-cert.pem,ca-key.pem,root-cert.pem,cert-chain.pem}.
# What federated shoal groups (and Istio's multicluster) trust each other by.
#
#   scripts/shared-root.sh DIR CLUSTER...
#
# Needs openssl. Keys are P-256; certificates last DAYS (default 30) days.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 DIR CLUSTER..." >&2; exit 2; }
command -v openssl >/dev/null || { echo "$0: openssl is needed" >&2; exit 2; }
dir=$1; shift
days=${DAYS:-30}
mkdir -p "$dir"
ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
if [ ! -f "$dir/root-cert.pem" ]; then
  openssl req -x509 "${ec[@]}" -keyout "$dir/root-key.pem" -out "$dir/root-cert.pem" \
    -subj "/O=shoal shared root" -days "$days" \
    -addext "basicConstraints=critical,CA:true" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  chmod 600 "$dir/root-key.pem"
fi
for c in "$@"; do
  d="$dir/$c"
  [ -f "$d/ca-cert.pem" ] && continue
  mkdir -p "$d"
  openssl req "${ec[@]}" -keyout "$d/ca-key.pem" -out "$d/ca.csr" -subj "/O=$c intermediate" 2>/dev/null
  printf 'basicConstraints=critical,CA:true,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign,digitalSignature\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n' >"$d/ext"
  openssl x509 -req -in "$d/ca.csr" -CA "$dir/root-cert.pem" -CAkey "$dir/root-key.pem" \
    -CAcreateserial -out "$d/ca-cert.pem" -days "$days" -extfile "$d/ext" 2>/dev/null
  cp "$dir/root-cert.pem" "$d/root-cert.pem"
  cat "$d/ca-cert.pem" "$dir/root-cert.pem" >"$d/cert-chain.pem"
  chmod 600 "$d/ca-key.pem"
  rm -f "$d/ca.csr" "$d/ext"
done
