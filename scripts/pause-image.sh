#!/usr/bin/env bash
# The pod sandbox image of the lab's kubelet nodes (no registry serves
# registry.k8s.io/pause here): test/cluster/pause/pause.c built statically, alone in an
# image named localhost/ipip-lab/pause:1, written as an OCI archive that `ctr images
# import` reads with its name. Built once, cached by the source's hash in
#   ${IPIP_IMAGE_CACHE:-$HOME/.cache/ipip-operator/image}/pause-HASH.tar
# The last line on stdout is the archive's path; progress goes to stderr.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
src=$root/test/cluster/pause/pause.c
name=localhost/ipip-lab/pause:1
cache=${IPIP_IMAGE_CACHE:-$HOME/.cache/ipip-operator/image}
hash=$(cat "$src" "${BASH_SOURCE[0]}" | sha256sum | cut -c1-12)
out=$cache/pause-$hash.tar
if [ -s "$out" ]; then echo "$out"; exit 0; fi

log() { echo "pause-image: $*" >&2; }
need=()
command -v gcc >/dev/null || need+=(gcc)
[ -e /usr/lib/x86_64-linux-gnu/libc.a ] || [ -n "$(find /usr/lib -name libc.a -print -quit 2>/dev/null)" ] || need+=(libc6-dev)
command -v buildah >/dev/null || need+=(buildah)
if [ "${#need[@]}" -gt 0 ]; then
  log "installing ${need[*]}"
  sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

mkdir -p "$cache"
work=$(mktemp -d "${TMPDIR:-/tmp}/ipip-pause.XXXXXX")
# buildah's own storage for this one build, removed after: nothing is left in the
# machine's container storage.
b=(buildah --root "$work/storage" --runroot "$work/run" --storage-driver vfs)
cleanup() { "${b[@]}" rm --all >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
gcc -static -Os -s -o "$work/pause" "$src"
ctr=$("${b[@]}" from scratch)
"${b[@]}" copy --chmod 0755 "$ctr" "$work/pause" /pause >/dev/null
"${b[@]}" config --entrypoint '["/pause"]' --cmd '' --user 65535:65535 "$ctr"
"${b[@]}" commit --quiet --format oci "$ctr" "oci-archive:$out.part:$name" >/dev/null
mv "$out.part" "$out"
log "built $name ($(du -h "$out" | cut -f1)) into $out"
echo "$out"
