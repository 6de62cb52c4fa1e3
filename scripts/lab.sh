#!/usr/bin/env bash
# The README's first command: the whole lab (a real API server and etcd, two nodes as
# User-Mode Linux kernels, the chart, an agent per node, Prometheus), the example tunnel
# applied with kubectl, a tour, then everything torn down. Needs root.
#
#   ./scripts/lab.sh               the demo: up, tour, down (exits)
#   ./scripts/lab.sh up            the same, but the lab stays up until Ctrl-C or `down`
#   ./scripts/lab.sh down          tears down a lab left by `up` (also one whose `up` was killed)
#   ./scripts/lab.sh sh NODE [CMD] a shell in a node of a running lab
set -euo pipefail
cd "$(dirname "$0")/.."
cmd="${1:-demo}"
[ "$#" -gt 0 ] && shift
case "$cmd" in
  demo) scripts/setup.sh; exec node_modules/.bin/node test/harness/lab-cli.ts up --exit-after-demo "$@" ;;
  up) scripts/setup.sh; exec node_modules/.bin/node test/harness/lab-cli.ts up "$@" ;;
  down|sh) exec node_modules/.bin/node test/harness/lab-cli.ts "$cmd" "$@" ;;
  *) echo "usage: $0 [up | down | sh NODE [COMMAND...]]" >&2; exit 2 ;;
esac
