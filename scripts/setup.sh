#!/usr/bin/env bash
# Installs what the lab and the tests need on a Debian machine, idempotently:
# Debian packages (iproute2, ping, tcpdump; Debian's User-Mode Linux kernel and kmod for
# the test that needs a kernel without nftables; openssl for the test API server's
# certificates; prometheus for promtool and the lab's Prometheus; curl for its HTTP API;
# nftables for nft in the guests of the lab kernel, which scripts/uml-kernel.sh builds
# and installs its own build tools for: scripts/test.sh and scripts/lab.sh run it next;
# buildah and debootstrap, with which scripts/image.sh builds the container image;
# containerd, runc and the CNI plugins, which the lab's kubelet nodes run)
# and the npm packages, which include the pinned Node.js 24 (the npm package "node") used
# by every script. The cluster tests also need Go (1.26+), with which
# scripts/cluster-tools.sh builds kube-apiserver, etcd, helm and the kubectl, kubelet,
# kube-controller-manager and kube-scheduler of the same release (kubectl is built too,
# not needed on the machine: Debian's is 1.20).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
# iptables: iptables-legacy, for the tests that show the agent leaves legacy rules alone.
for pair in linux.uml:user-mode-linux insmod:kmod ip:iproute2 ping:iputils-ping tcpdump:tcpdump openssl:openssl \
  promtool:prometheus curl:curl nft:nftables iptables-legacy:iptables buildah:buildah debootstrap:debootstrap \
  containerd:containerd runc:runc; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || [ -x "/usr/sbin/${pair%%:*}" ] || need+=("${pair#*:}")
done
# The lab's kubelet nodes (test/harness/kubelet-node.ts): containerd and runc above, and the
# CNI plugins whose bridge configuration makes a node's pod network ready.
[ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)
if [ "${#need[@]}" -gt 0 ]; then
  echo "setup: installing Debian packages: ${need[*]}"
  sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# npm ci when the lock file is newer than what is installed (or nothing is installed).
if [ ! -x node_modules/.bin/node ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: npm ci"
  npm ci --no-audit --no-fund --loglevel=error
fi
