#!/usr/bin/env bash
# The container image's /app without Docker: the same steps as the Dockerfile's deps and
# build stages (a production-only `npm ci`, declarations and source maps removed; tsc into
# dist/), laid out as the runtime stage copies them, then run the way the image runs them
# (ENTRYPOINT node /app/dist/cli/main.js, NODE_ENV=production, from /, with no HOME) by the
# pinned Node. It catches a devDependency needed at run time, a module that no longer loads
# without the trimmed files, and a write under /app.
#
#   scripts/image-smoke.sh [DIR]   DIR: an empty or new directory to build /app in, kept
#                                  afterwards (default: a temporary one, removed)
# Environment: NODE, the Node to run (default: the pinned node_modules/.bin/node).
# npm reads packages from its cache when it has them (--prefer-offline).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
node=${NODE:-$repo/node_modules/.bin/node}
fail() { echo "image-smoke: $*" >&2; exit 1; }
[ -x "$node" ] || fail "$node is missing: run scripts/setup.sh"

work=$(mktemp -d "${TMPDIR:-/tmp}/ipip-image-smoke.XXXXXX")
trap 'rm -rf "$work"' EXIT
if [ $# -ge 1 ]; then
  app=$(realpath -m "$1")
  mkdir -p "$app"
  [ -z "$(ls -A "$app")" ] || fail "$app is not empty"
else
  app=$work/app
  mkdir "$app"
fi
# Node looks for packages in node_modules of every directory above a module: one above /app
# (the checkout's, say) would hide a missing dependency.
dir=$app
while [ "$dir" != / ]; do
  dir=$(dirname "$dir")
  [ ! -e "$dir/node_modules" ] || fail "$dir/node_modules would be visible from $app: pick a directory outside any node project"
done

# deps stage: npm ci --omit=dev --ignore-scripts, then the same find as the Dockerfile.
mkdir "$work/deps"
cp package.json package-lock.json "$work/deps/"
(cd "$work/deps" && PATH="$(dirname "$(readlink -f "$node")"):$PATH" \
  npm ci --omit=dev --ignore-scripts --no-audit --no-fund --prefer-offline --loglevel=error)
find "$work/deps/node_modules" -type f \( -name '*.d.ts' -o -name '*.d.mts' -o -name '*.d.cts' -o -name '*.map' \) -delete

# build stage: tsc -p tsconfig.build.json (here into $app/dist, leaving the checkout's dist alone).
"$node" node_modules/typescript/bin/tsc -p tsconfig.build.json --outDir "$app/dist"

# runtime stage: COPY node_modules, package.json, dist.
mv "$work/deps/node_modules" "$app/node_modules"
cp package.json "$app/"

# Every package the lock file marks dev-only (typescript, the npm package "node", ...) is
# absent. (@types/node is not dev-only: production @types packages depend on it.)
dev_only=$("$node" -p 'Object.entries(require("./package-lock.json").packages).filter(([p, e]) => p !== "" && e.dev === true).map(([p]) => p).join("\n")')
[ -n "$dev_only" ] || fail "package-lock.json marks no package dev-only"
while read -r path; do
  [ ! -e "$app/$path" ] || fail "$path is dev-only but is in the runtime node_modules"
done <<<"$dev_only"

snapshot() { find "$app" -printf '%p %s %T@ %m\n' | sort; }
before=$(snapshot)
# As the image runs: from /, a clean environment, a HOME that does not exist.
run() { (cd / && env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin NODE_ENV=production HOME=/nonexistent "$node" "$@"); }

want_version=$("$node" -p 'require("./package.json").version')
got_version=$(run "$app/dist/cli/main.js" version) || fail "version exited $?"
[ "$got_version" = "$want_version" ] || fail "version printed '$got_version', package.json says '$want_version'"
echo "image-smoke: version: $got_version"

want_plan='ip link add name ipiptun mtu 1480 group 203 type ipip local 192.168.40.2 remote 192.168.40.3 ttl 64 dev eth1
ip link set dev ipiptun alias ipip-operator/lab
ip link set dev ipiptun up
ip address add 172.0.0.2/32 peer 172.0.0.3/32 dev ipiptun
ip route replace 172.0.0.0/24 dev ipiptun proto 203'
got_plan=$(run "$app/dist/cli/main.js" plan -f "$repo/examples/tunnel.yaml" --node node-a --from-scratch) || fail "plan exited $?"
[ "$got_plan" = "$want_plan" ] || fail "plan printed:
$got_plan
expected:
$want_plan"
echo "image-smoke: plan -f examples/tunnel.yaml --node node-a --from-scratch: $(printf '%s\n' "$got_plan" | wc -l) commands"

# `version` and `plan` load only part of the code (the cluster agent is a dynamic import):
# load every module, so each production import is resolved. cli/main.js runs on import.
modules=$(cd "$app/dist" && find . -name '*.js' ! -path ./cli/main.js | sort)
count=$(printf '%s\n' "$modules" | wc -l)
run --input-type=module -e '
  const [dir, ...files] = process.argv.slice(1);
  for (const file of files) await import(`${dir}/${file}`);
' "$app/dist" $modules || fail "a module of dist/ does not load in the runtime layout"
echo "image-smoke: all $count other modules of dist/ load"

[ "$(snapshot)" = "$before" ] || fail "something under $app changed while it ran"
echo "image-smoke: ok, nothing under /app written"
