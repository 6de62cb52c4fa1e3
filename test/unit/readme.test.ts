// The README's "What it refuses" table is the list users look a reason up in: it must
// name every reason the agent can report, with the same cause, fix and handling. Its
// nftables example must be what the agent writes.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { renderPlan } from '../../src/dataplane/render.ts';
import { REASONS } from '../../src/model/problem.ts';
import { plan } from '../../src/plan/engine.ts';
import { resolve } from '../../src/resolve/resolve.ts';
import { meshExample, REPO } from '../harness/repo.ts';

const HANDLING = { waiting: 'waits', refused: 'refuses', degraded: 'programs, warns', transient: 'retries' } as const;

describe('README', () => {
  test('"What it refuses" lists every reason, with its cause, its fix and what the agent does', () => {
    const readme = readFileSync(join(REPO, 'README.md'), 'utf8');
    const section = readme.split(/^## /m).find((s) => s.startsWith('What it refuses'));
    assert.ok(section !== undefined, 'README.md has a "## What it refuses" section');
    const rows = section
      .split('\n')
      .filter((l) => /^\| `/.test(l))
      .map((l) =>
        l
          .split('|')
          .slice(1, 5)
          .map((c) => c.trim().replace(/`/g, '')),
      );
    const expected = Object.entries(REASONS).map(([reason, r]) => [reason, r.cause, r.fix, HANDLING[r.class]]);
    assert.deepEqual(rows, expected);
  });
});

describe('README: the nftables example', () => {
  test('is exactly what `plan -f examples/mesh.yaml --node node-c --from-scratch` prints for nft', () => {
    const readme = readFileSync(join(REPO, 'README.md'), 'utf8');
    const shown = /```sh\n(nft -f - <<'EOF'\n[\s\S]*?\nEOF)\n```/.exec(readme)?.[1];
    assert.ok(shown !== undefined, 'README.md shows an nft here-document');
    const resolutions = resolve({
      nodeName: 'node-c',
      tunnels: [meshExample()],
      kernel: undefined,
      nodeAddresses: new Map(),
    });
    const lines = renderPlan(plan(resolutions, { links: [], routes: [] }).actions);
    const nft = lines.slice(lines.indexOf("nft -f - <<'EOF'"), lines.indexOf('EOF') + 1);
    assert.equal(shown, nft.join('\n'));
  });
});
