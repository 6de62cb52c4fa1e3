#!/usr/bin/env bash
# The README's test command: installs what is missing, then runs every test
# (type check, unit tests, real-kernel tests in User-Mode Linux).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec npm test
