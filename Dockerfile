# The ipip-operator agent image: the built JavaScript, its production dependencies, the Node.js
# binary, iproute2 (`ip`) and nftables (`nft`), the two programs the agent runs, nothing else.
#
#   docker build --build-arg VERSION=$(node -p 'require("./package.json").version') -t ipip-operator .
#
# The Node major here must be the one package.json's engines asks for (24), on the same
# Debian release (bookworm) in every stage: test/unit/dockerfile.test.ts checks both.
# Without Docker, scripts/image.sh builds this file as it is with buildah, and
# test/cluster/image.test.ts runs what it built.

# --- build: the agent, bundled ------------------------------------------------------------
FROM node:24-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
# --ignore-scripts: the "node" devDependency's preinstall would download a second Node that
# nothing here uses, and "prepare" would run tsc before the sources are copied in. esbuild's
# binary comes in its platform package (an optional dependency), which has no script.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY src ./src
# What `npm run bundle` does (package.json "bundle"): src/cli/main.ts and every module it
# loads, node_modules included, as one ES module, dist/cli/main.js, with the cluster path in
# a chunk of its own (dist/cli/chunks/) that only `agent` without --manifest imports. The
# cluster agent opens 4 files of JavaScript and JSON instead of 415 (a standalone one 315),
# which a slow node pays for in system time: loading the agent took 1.8 s as tsc builds it
# and 0.95 s bundled in the UML lab guests (bench/RESULTS.md; on a later host 1.13 s, and
# 0.58 s once the agent started its tools and wrote its logs itself, without execa and
# winston); and the image needs no node_modules.
RUN npm run bundle

# --- runtime -----------------------------------------------------------------------------
# debian:bookworm-slim plus the one Node binary, rather than node:24-bookworm-slim: the same
# Debian and the same Node, minus npm, corepack and the C headers (about 25-30 MB; npm alone
# is 19 MB), which the agent never runs and which would only add to what a scanner reports.
# The official Node binary needs glibc, libstdc++6 and libgcc-s1; bookworm-slim has all
# three (its apt depends on them). Estimated size: 75 MB Debian + 7 MB iproute2 and its
# libraries + 3 MB nftables and its libraries + 121 MB node + 0.5 MB for the bundle, about
# 207 MB unpacked (218 MB as built; test/cluster/image.test.ts holds it under 300 MB).
FROM debian:bookworm-slim

# iproute2 and nftables, nothing else: the agent reads and writes the kernel only through
# `ip` (-json, -batch, monitor) and `nft` (-j, -f, monitor) for its own table; both need
# NET_ADMIN and nothing more. --no-install-recommends; the package lists are not kept.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends iproute2 nftables \
 && rm -rf /var/lib/apt/lists/*

COPY --from=build /usr/local/bin/node /usr/local/bin/node

# Layers from the least to the most often changed. Everything is owned by root (COPY's
# default) with modes 0644/0755, so it is read-only to any other user, and nothing under
# /app is written at run time: the chart can set readOnlyRootFilesystem. The agent writes
# only to stdout/stderr and the kernel, and needs no HOME.
WORKDIR /app
# dist/cli/main.js reads the version from ../../package.json.
COPY package.json ./
COPY --from=build /src/dist ./dist

ENV NODE_ENV=production
# V8's young generation grows to its 16 MiB semi-spaces (over 100 MiB committed) in a burst
# of API writes (1,000 tunnels' status writes and Events) and keeps them; capped at 2 MiB the
# cluster agent settles at about half the RSS with 1,000 tunnels and 20-30 MiB less idle
# (bench/memory.ts). A NODE_OPTIONS of the pod's own replaces this one.
ENV NODE_OPTIONS=--max-semi-space-size=2

ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="ipip-operator" \
      org.opencontainers.image.description="A Kubernetes node agent that builds and keeps Linux IPIP tunnels between cluster nodes" \
      org.opencontainers.image.source="https://github.com/ipip-operator/ipip-operator" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"

# No USER: the image does not force a user. In the cluster the agent changes links, addresses
# and routes in the host's network namespace, which takes NET_ADMIN, and a non-root uid does
# not get an added capability in its effective set: the pod runs as uid 0 with NET_ADMIN
# added (not privileged). `version` and `plan --from-scratch` work as any uid.
ENTRYPOINT ["node", "/app/dist/cli/main.js"]
CMD ["agent"]
