// The lab CLI's arguments (./scripts/lab.sh [up] --nodes N): parsed before anything of the
// lab starts, and a bad one is a message and exit 2, never a stack trace.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { labNodeNames, MAX_LAB_NODES } from '../harness/full-lab.ts';
import { parseUpArgs, UsageError } from '../harness/lab-cli.ts';
import { REPO } from '../harness/repo.ts';

describe('lab CLI arguments', () => {
  test('up: two nodes by default; --nodes N and --nodes=N; --exit-after-demo anywhere', () => {
    assert.deepEqual(parseUpArgs([]), { exitAfterDemo: false, nodes: 2 });
    assert.deepEqual(parseUpArgs(['--exit-after-demo']), { exitAfterDemo: true, nodes: 2 });
    assert.deepEqual(parseUpArgs(['--nodes', '3']), { exitAfterDemo: false, nodes: 3 });
    assert.deepEqual(parseUpArgs(['--exit-after-demo', '--nodes=3']), { exitAfterDemo: true, nodes: 3 });
    assert.deepEqual(parseUpArgs(['--nodes', String(MAX_LAB_NODES), '--exit-after-demo']), {
      exitAfterDemo: true,
      nodes: MAX_LAB_NODES,
    });
  });

  test('the nodes of a lab: node-a, node-b, node-c, ...', () => {
    assert.deepEqual(labNodeNames(2), ['node-a', 'node-b']);
    assert.deepEqual(labNodeNames(3), ['node-a', 'node-b', 'node-c']);
    assert.equal(labNodeNames(MAX_LAB_NODES).at(-1), 'node-h');
    assert.throws(() => labNodeNames(1), /2 to 8 nodes/);
  });

  const bad: Array<[string[], RegExp]> = [
    [['--nodes'], /--nodes needs a number of nodes, from 2 to 8/],
    [['--nodes', ''], /--nodes needs a number/],
    [['--nodes='], /--nodes needs a number/],
    [['--nodes', '1'], /--nodes "1": a lab has from 2 to 8 nodes/],
    [['--nodes', '9'], /--nodes "9": a lab has from 2 to 8 nodes/],
    [['--nodes', '0'], /from 2 to 8/],
    [['--nodes', '-3'], /from 2 to 8/],
    [['--nodes', '2.5'], /from 2 to 8/],
    [['--nodes', 'three'], /from 2 to 8/],
    [['--nodes', '1e1'], /from 2 to 8/],
    [['--nodes', '99999999999999999999'], /from 2 to 8/],
    [['--nodes', '--exit-after-demo'], /from 2 to 8/],
    [['--nodes', '3', '--nodes', '3'], /--nodes is given twice/],
    [['--node', '3'], /unknown argument "--node"/],
    [['3'], /unknown argument "3"/],
  ];
  for (const [args, message] of bad) {
    test(`up ${args.join(' ')}: refused with ${message}`, () => {
      assert.throws(
        () => parseUpArgs(args),
        (e: unknown) => e instanceof UsageError && message.test(e.message),
      );
    });
  }

  test('the CLI itself: a bad --nodes exits 2 with the message and the usage, no stack trace, nothing started', () => {
    for (const args of [['--nodes', '9'], ['--nodes', 'abc'], ['--nodes'], ['--bogus']]) {
      const r = spawnSync(process.execPath, [join(REPO, 'test/harness/lab-cli.ts'), 'up', ...args], {
        encoding: 'utf8',
        cwd: REPO,
        timeout: 30_000,
      });
      assert.equal(r.status, 2, `up ${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /^lab: .+\nusage: node test\/harness\/lab-cli\.ts up /);
      assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
      assert.equal(r.stdout, '', 'nothing of the lab ran');
    }
  });
});
