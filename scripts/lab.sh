#!/usr/bin/env bash
# The README's first command: the two-host lab on a real kernel, the example tunnel up
# and pinging. Needs root (User-Mode Linux networking inside its own guest).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec npm run --silent lab
