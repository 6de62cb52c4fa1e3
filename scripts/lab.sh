#!/usr/bin/env bash
# The README's first command: the whole lab (a real control plane, two nodes as
# User-Mode Linux kernels, the project's own Linux 6.12, each with containerd and a
# kubelet, the image built from the Dockerfile, the chart, whose DaemonSet runs an agent
# pod per node, Prometheus), the example tunnel applied with kubectl, a tour, then
# everything torn down. Needs root.
#
#   ./scripts/lab.sh               the demo: up, tour, down (exits)
#   ./scripts/lab.sh --nodes 3     the demo with node-a, node-b and node-c: examples/mesh.yaml, every pair pinged
#   ./scripts/lab.sh up            the same, but the lab stays up until Ctrl-C or `down` (also: up --nodes 3)
#   ./scripts/lab.sh down          tears down a lab left by `up` (also one whose `up` was killed)
#   ./scripts/lab.sh sh NODE [CMD] a shell in a node of a running lab
#
# --nodes N takes 2 (the default) to 8; lab-cli.ts checks it.
set -euo pipefail
cd "$(dirname "$0")/.."
cmd="${1:-demo}"
case "$cmd" in
  -*) cmd=demo ;;   # options of the demo: ./scripts/lab.sh --nodes 3
  *) [ "$#" -gt 0 ] && shift ;;
esac
# The nodes' kernel (scripts/uml-kernel.sh: about 11 minutes on 2 cores, once; then
# cached) is built before the lab starts, so no node waits on it.
# So are the cluster tools and the images the kubelet nodes run (the project's, from the
# Dockerfile, and the pods' pause image), each cached after its first build.
prepare() {
  scripts/setup.sh
  nice scripts/uml-kernel.sh >/dev/null
  nice scripts/cluster-tools.sh >/dev/null
  nice scripts/image.sh >/dev/null
  scripts/pause-image.sh >/dev/null
}
case "$cmd" in
  demo) prepare; exec node_modules/.bin/node test/harness/lab-cli.ts up --exit-after-demo "$@" ;;
  up) prepare; exec node_modules/.bin/node test/harness/lab-cli.ts up "$@" ;;
  down|sh) exec node_modules/.bin/node test/harness/lab-cli.ts "$cmd" "$@" ;;
  *) echo "usage: $0 [--nodes N | up [--nodes N] | down | sh NODE [COMMAND...]]  (N: 2 to 8, default 2)" >&2; exit 2 ;;
esac
