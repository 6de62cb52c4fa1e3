// Counts that must hold exactly, on a real kernel (issue 14's regression guard; times and
// ratios are benchmarks, in bench/RESULTS.md): the reads and writes a running agent makes
// (a write is one process; ip's read is a request to one reader process kept for the
// agent's life), and the commands it writes, for each of: converging 10 point-to-point tunnels from empty, a
// link set down by hand, one tunnel's ttl edited in the manifest, every tunnel removed.
// The agent's loop and real dataplane run in the guest (test/harness/counts-guest.ts);
// each step waits for the agent's write, then for five source debounces in which any
// second pass the write's own echoes caused would have run.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { guestScriptResult, setUpTwoHosts } from '../harness/two-hosts.ts';
import { Guest } from '../harness/uml.ts';

type Step = Record<string, number> & { lines: string[]; readers: string[] };

describe('what a running agent runs and writes, counted on a real kernel', { timeout: 300_000 }, () => {
  let guest: Guest;
  let steps: Record<'converge' | 'linkDown' | 'ttlEdited' | 'removed', Step>;
  before(async () => {
    guest = await Guest.boot();
    await setUpTwoHosts(guest);
    steps = await guestScriptResult(guest, 'test/harness/counts-guest.ts', 240_000);
  });
  after(async () => {
    await guest?.stop();
  });

  test('converging from empty: one read, one write of every command; nft is asked once, about a table left over', () => {
    const { lines, readers: _, ...processes } = steps.converge;
    // The first read of a process looks for a table of ours left behind (one `nft list`; no
    // probe of the kernel's nftables, which only a node whose tunnels can want rules asks);
    // with no tunnel that can want rules, no later pass runs nft.
    assert.deepEqual(processes, { 'ip apply': 1, 'ip observe': 1, 'nft observe': 1 });
    assert.equal(lines.length, 10 * 5, 'link add, alias, address, link up and route, per tunnel');
  });

  test('a link set down by hand: one read and one write of the two commands that repair it, and no second pass', () => {
    const { readers: _, ...step } = steps.linkDown;
    assert.deepEqual(step, {
      'ip apply': 1,
      'ip observe': 1,
      lines: ['ip link set dev bench5 up', 'ip route replace 10.100.5.0/24 dev bench5 proto 203'],
    });
  });

  test("one tunnel's ttl edited: one read and one command", () => {
    const { readers: _, ...step } = steps.ttlEdited;
    assert.deepEqual(step, {
      'ip apply': 1,
      'ip observe': 1,
      lines: ['ip link set dev bench5 type ipip local 192.168.40.2 remote 10.200.0.6 ttl 32 dev eth1'],
    });
  });

  test('every tunnel removed: one read and one write of ten deletions, and no second pass', () => {
    const { lines, readers: _, ...processes } = steps.removed;
    assert.deepEqual(processes, { 'ip apply': 1, 'ip observe': 1 });
    assert.deepEqual(
      lines,
      Array.from({ length: 10 }, (_, i) => `ip link del dev bench${i}`),
    );
  });

  test('one ip reader process for all four steps: reads start no process', () => {
    const readers = Object.values(steps).map((step) => step.readers);
    assert.equal(readers[0]!.length, 1, `one reader after the first pass: ${JSON.stringify(readers)}`);
    assert.deepEqual(readers, [readers[0], readers[0], readers[0], readers[0]], 'the same process at every step');
  });
});
