#!/usr/bin/env bash
# Builds the project's own User-Mode Linux kernel: Debian's linux-source-6.12 (a current
# LTS) with scripts/uml-kernel.patch (a host with AMX has more XSAVE state than UML
# held: every guest's init was killed at boot), configured with `make ARCH=um defconfig`
# plus scripts/uml-kernel.config, every option built in (nftables for ip/ip6/inet with nat and masquerade, every tunnel mode,
# namespaces, cgroups; no io_uring). Debian's own linux.uml (6.1) has nf_tables only for
# the bridge family.
#
#   scripts/uml-kernel.sh          build the kernel if needed, print the path of its binary
#   scripts/uml-kernel.sh VARIANT  the same for a variant: scripts/uml-kernel-VARIANT.config
#                                  overrides lines of uml-kernel.config; its modules (the
#                                  options it sets =m) are in modules/ beside the binary
#
# The kernel goes to a cache OUTSIDE the checkout, keyed by the source package's version
# and a hash of the config and patch files:
#   ${IPIP_KERNEL_CACHE:-$HOME/.cache/ipip-operator/kernel}/<version>-<hash>[-VARIANT]/linux
# so a changed config or an upgraded source package builds anew (about 11 minutes on 2
# busy cores), and an unchanged one prints the path at once. The last line on stdout is
# always the path of the kernel binary; progress goes to stderr. Installs the source
# package and the build tools (flex bison bc gcc make libc6-dev: a UML kernel is a
# program of the host, linked with its C library) with apt-get when missing, as root or
# with sudo. scripts/test.sh and scripts/lab.sh run it before anything else starts.
# IPIP_KERNEL_JOBS sets make's -j (default: the number of CPUs).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
config=$root/scripts/uml-kernel.config
patchfile=$root/scripts/uml-kernel.patch
package=linux-source-6.12
tarball=/usr/src/$package.tar.xz
cache=${IPIP_KERNEL_CACHE:-$HOME/.cache/ipip-operator/kernel}

log() { echo "uml-kernel: $*" >&2; }
die() { log "$*"; exit 1; }

[[ $# -le 1 ]] || die "usage: $0 [VARIANT]"
variant=${1:-}
overrides=""
if [[ -n $variant ]]; then
  [[ $variant =~ ^[a-z0-9]+$ ]] || die "a variant is a lowercase word: $variant"
  overrides=$root/scripts/uml-kernel-$variant.config
  [[ -f $overrides ]] || die "no $overrides for the variant $variant"
fi
[[ -f $config ]] || die "no $config"
[[ -f $patchfile ]] || die "no $patchfile"

apt_install() { # packages...
  log "installing Debian packages: $*"
  local sudo_cmd=""
  [[ $(id -u) -eq 0 ]] || sudo_cmd=sudo
  $sudo_cmd apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "$@" >&2 ||
    die "could not install $* (apt-get install -y $* by hand, then run $0 again)"
}

installed_version() { dpkg-query -W -f='${Status} ${Version}\n' "$package" 2>/dev/null | awk '$3 == "installed" { print $4 }'; }

version=$(installed_version || true)
if [[ -z $version || ! -f $tarball ]]; then
  apt_install "$package"
  version=$(installed_version || true)
fi
[[ -n $version && -f $tarball ]] || die "$package is not installed or has no $tarball"

# The config and the patch both make the kernel: a change to either builds anew.
hash=$(cat "$config" "$patchfile" ${overrides:+"$overrides"} | sha256sum | cut -c1-12)
key=$(printf %s "$version" | tr -c 'A-Za-z0-9.+_-' _)-$hash${variant:+-$variant}
entry=$cache/$key

# An entry only ever appears whole (renamed into place below), so its binary means done.
if [[ -x $entry/linux ]]; then
  echo "$entry/linux"
  exit 0
fi

# Packages, not commands: libc6-dev has none, and gcc comes without it (only recommended).
need=()
for pkg in flex bison bc gcc make libc6-dev patch; do
  dpkg-query -W -f='${Status}\n' "$pkg" 2>/dev/null | grep -qx 'install ok installed' || need+=("$pkg")
done
[[ ${#need[@]} -eq 0 ]] || apt_install "${need[@]}"

mkdir -p "$cache"
# Several test files may start at once: one builds, the others wait for it.
exec 9>"$cache/.lock-$key"
flock 9
if [[ -x $entry/linux ]]; then
  echo "$entry/linux"
  exit 0
fi

# Built in a temporary dir next to the cache (same filesystem, so the final rename is
# atomic); a build that fails or is killed leaves no entry behind.
staged=""
build=$(mktemp -d "$cache/.build-$key.XXXXXX")
trap 'rm -rf "$build" "$staged"' EXIT
src=$build/$package
jobs=${IPIP_KERNEL_JOBS:-$(nproc)}
start=$SECONDS
log "building the UML kernel from $package $version with $(basename "$config")${overrides:+ and $(basename "$overrides")} ($hash) into $entry"
log "this takes about 11 minutes on 2 cores, once; make's output is in $build/make.log meanwhile"

tar -xJf "$tarball" -C "$build"
[[ -f $src/Makefile ]] || die "$tarball did not unpack to $src"
kmake() { make -C "$src" ARCH=um KBUILD_BUILD_USER=ipip-operator KBUILD_BUILD_HOST=uml-kernel "$@" >>"$build/make.log" 2>&1; }
failed() { tail -n 40 "$build/make.log" >&2; die "$*"; }

patch -d "$src" -p1 --quiet --forward <"$patchfile" >>"$build/make.log" 2>&1 ||
  failed "$(basename "$patchfile") does not apply to $package $version"

kmake defconfig || failed "make ARCH=um defconfig failed"
{
  echo
  echo "# scripts/uml-kernel.config"
  cat "$config"
  if [[ -n $overrides ]]; then
    echo "# scripts/$(basename "$overrides")"
    cat "$overrides"
  fi
} >>"$src/.config"
kmake olddefconfig || failed "make ARCH=um olddefconfig failed"

# Every option as written (the variant's lines win): =y stays =y, =m stays =m, a number
# stays that number, "is not set" stays unset. (olddefconfig silently drops an option
# whose dependencies are not met.)
declare -A want=()
while IFS= read -r line; do
  if [[ $line =~ ^(CONFIG_[A-Za-z0-9_]+)=(y|m|[0-9]+)$ ]]; then
    want[${BASH_REMATCH[1]}]=${BASH_REMATCH[2]}
  elif [[ $line =~ ^#\ (CONFIG_[A-Za-z0-9_]+)\ is\ not\ set$ ]]; then
    want[${BASH_REMATCH[1]}]=unset
  elif [[ -n $line && $line != \#* ]]; then
    die "cannot read the line '$line' (want CONFIG_X=y, =m, =NUMBER or # CONFIG_X is not set)"
  fi
done < <(cat "$config" ${overrides:+"$overrides"})
wrong=()
for option in "${!want[@]}"; do
  if [[ ${want[$option]} == unset ]]; then
    ! grep -q "^$option=" "$src/.config" || wrong+=("$option unset")
  else
    grep -qx "$option=${want[$option]}" "$src/.config" || wrong+=("$option=${want[$option]}")
  fi
done
if [[ ${#wrong[@]} -gt 0 ]]; then
  die "after olddefconfig these options are not as written (a missing dependency?): ${wrong[*]}"
fi

kmake -j"$jobs" linux || failed "make ARCH=um linux failed"
# A variant's modules (the main kernel has every option it needs built in).
if [[ -n $variant ]]; then
  kmake -j"$jobs" modules || failed "make ARCH=um modules failed"
  kmake modules_install INSTALL_MOD_PATH="$build/modules" || failed "make ARCH=um modules_install failed"
fi
[[ -x $src/linux ]] || failed "the build made no $src/linux"
built=$((SECONDS - start))
log "built in $((built / 60)) min $((built % 60)) s"

# Stripped, the binary is a fraction of the size; the kernel's own symbols (kallsyms)
# stay, so oops traces still name functions. Kept whole if the stripped one does not run.
binary=$src/linux
if strip -o "$src/linux.stripped" "$src/linux" 2>>"$build/make.log" &&
  [[ $("$src/linux.stripped" --version 2>/dev/null </dev/null) == "$("$src/linux" --version 2>/dev/null </dev/null)" ]]; then
  binary=$src/linux.stripped
else
  log "strip did not work on the UML binary; keeping it unstripped"
fi

staged=$(mktemp -d "$cache/.entry-$key.XXXXXX")
chmod 755 "$staged"
cp "$src/.config" "$staged/config"
{
  echo "source: $package $version"
  echo "config: $(basename "$config") sha256 $(sha256sum "$config" | cut -d' ' -f1)"
  echo "patch: $(basename "$patchfile") sha256 $(sha256sum "$patchfile" | cut -d' ' -f1)"
  echo "kernel: $("$binary" --version 2>/dev/null </dev/null || true)"
  echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ) in ${built}s with make -j$jobs"
} >"$staged/build-info"
if [[ -n $variant ]]; then mv "$build/modules" "$staged/modules"; fi
mv "$binary" "$staged/linux"
rm -rf "$entry" # only an entry without its binary can be here: not a finished one
mv -T "$staged" "$entry"
log "kernel $(du -h "$entry/linux" | cut -f1) at $entry/linux"
echo "$entry/linux"
