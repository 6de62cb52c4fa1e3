#!/usr/bin/env bash
# The README's test command: installs what is missing, then runs every test
# (type check, unit tests, real-kernel tests in User-Mode Linux).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# The guests' kernel (about 11 minutes on 2 cores, once; then cached) is built before any
# test starts: built on demand by a test file, it took the cores from the timing-sensitive
# tests running beside it.
nice scripts/uml-kernel.sh >/dev/null
# Its variant without nftables for ip (nft-driver.test.ts, nftables-unavailable.test.ts).
nice scripts/uml-kernel.sh nonft >/dev/null
# The cluster tests' kube-apiserver, etcd and helm (built from Go modules, about 5 minutes
# once; then cached), for the same reason.
nice scripts/cluster-tools.sh >/dev/null
# The agent's container image, built from the Dockerfile with buildah (about 2 minutes once,
# and again when its inputs change; then cached), which test/cluster/image.test.ts checks
# and the lab's kubelet nodes run, with the pods' pause image (a second, once).
nice scripts/image.sh >/dev/null
scripts/pause-image.sh >/dev/null
exec npm test
