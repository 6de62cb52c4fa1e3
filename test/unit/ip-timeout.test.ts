// The ip driver's write timeout grows with the batch: a fixed one would kill a big write
// that is making progress on a slow node (1,000 tunnels from empty is 5,000 commands).
// A stand-in `ip` that takes 0.5 s to run any batch shows it.

import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { manyTunnels } from '../../bench/tunnels.ts';
import { IpDriver, WRITE_MS_PER_LINE, writeTimeoutMs } from '../../src/dataplane/ip/driver.ts';
import type { IpAction } from '../../src/model/action.ts';
import { plan } from '../../src/plan/engine.ts';
import { resolve } from '../../src/resolve/resolve.ts';
import { bareKernel } from './builders.ts';

const dir = mkdtempSync(join(tmpdir(), 'ipip-ip-timeout-'));
const slowIp = join(dir, 'ip');
writeFileSync(slowIp, '#!/bin/sh\nsleep 0.5\n');
chmodSync(slowIp, 0o755);

const actionsFor = (n: number) =>
  plan(
    resolve({ nodeName: 'node-a', tunnels: manyTunnels(n), kernel: bareKernel(), nodeAddresses: new Map() }),
    bareKernel(),
  ).actions as IpAction[];

describe("the ip driver's write timeout", () => {
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('is the base plus a share per command', () => {
    assert.equal(writeTimeoutMs(30_000, 0), 30_000);
    assert.equal(writeTimeoutMs(30_000, 5000), 30_000 + 5000 * WRITE_MS_PER_LINE);
  });

  test('a batch of 5 commands is killed at 100 + 50 ms; one of 500, given 5.1 s, runs its 0.5 s', async () => {
    const driver = new IpDriver({ ipPath: slowIp, timeoutMs: 100, batchDir: dir });
    const small = await driver.apply(actionsFor(1));
    assert.deepEqual(
      [...new Set(small.map((r) => r.error))],
      [`ip -batch timed out after ${100 + 5 * WRITE_MS_PER_LINE} ms`],
    );
    const actions = actionsFor(100);
    assert.equal(actions.flatMap((a) => a.ops).length, 500);
    const big = await driver.apply(actions);
    assert.equal(big.length, actions.length);
    assert.deepEqual(
      big.filter((r) => r.error !== undefined),
      [],
    );
  });
});
