// The README's "What it refuses" table is the list users look a reason up in: it must
// name every reason the agent can report, with the same cause, fix and handling.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { REASONS } from '../../src/model/problem.ts';
import { REPO } from '../harness/repo.ts';

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
