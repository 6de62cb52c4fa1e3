#!/usr/bin/env bash
# The lint step of the README's test command: Biome's formatter and linter (biome.json:
# lines of code formatted to 120 columns, the type-aware promise rules, no unused code),
# then a hard limit of 160 columns on every line, which the formatter cannot enforce on
# strings and comments.
set -euo pipefail
cd "$(dirname "$0")/.."
node_modules/.bin/biome ci --error-on-warnings --colors=off .
MAX=160
long=$(git ls-files -- '*.ts' '*.sh' | xargs awk -v max="$MAX" 'length > max { printf "%s:%d: %d columns\n", FILENAME, FNR, length }')
if [ -n "$long" ]; then
  echo "lint: lines over $MAX columns:" >&2
  echo "$long" >&2
  exit 1
fi
echo "lint: formatted, linted, no line over $MAX columns"
