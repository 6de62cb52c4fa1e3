// The coalescing runner behind the agent loop: bursts become one run, a request during a
// run becomes exactly one more, a retry waits its delay unless an event comes first, and
// stop waits for the run under way.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { backoffMs, CoalescingRunner } from '../../src/controller/runner.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('CoalescingRunner', () => {
  test('a burst of requests is one run', async () => {
    let runs = 0;
    const runner = new CoalescingRunner(async () => { runs += 1; return undefined; }, { debounceMs: 20 });
    for (let i = 0; i < 50; i++) runner.request();
    await sleep(100);
    assert.equal(runs, 1);
    await runner.stop();
  });

  test('requests during a run give exactly one more run, never two at once', async () => {
    let runs = 0;
    let concurrent = 0;
    let maxConcurrent = 0;
    const runner = new CoalescingRunner(async () => {
      runs += 1; concurrent += 1; maxConcurrent = Math.max(maxConcurrent, concurrent);
      await sleep(40);
      concurrent -= 1;
      return undefined;
    }, { debounceMs: 5 });
    runner.request(0);
    await sleep(15);
    for (let i = 0; i < 10; i++) runner.request();
    await sleep(150);
    assert.deepEqual([runs, maxConcurrent], [2, 1]);
    await runner.stop();
  });

  test('a retry waits its delay, and an event before it runs at once', async () => {
    const starts: number[] = [];
    const t0 = Date.now();
    const runner = new CoalescingRunner(async () => { starts.push(Date.now() - t0); return starts.length === 1 ? 10_000 : undefined; }, { debounceMs: 5 });
    runner.request(0);
    await sleep(50);
    assert.equal(starts.length, 1, 'the 10 s retry has not run yet');
    runner.request();
    await sleep(50);
    assert.equal(starts.length, 2, 'the event ran before the retry was due');
    await runner.stop();
  });

  test('stop waits for the run under way and prevents more', async () => {
    let finished = 0;
    const runner = new CoalescingRunner(async () => { await sleep(30); finished += 1; return 1; }, { debounceMs: 1 });
    runner.request(0);
    await sleep(10);
    await runner.stop();
    assert.equal(finished, 1);
    runner.request(0);
    await sleep(30);
    assert.equal(finished, 1);
  });

  test('backoff doubles from 1 s to at most 5 min', () => {
    assert.deepEqual([1, 2, 3, 10, 20].map((n) => backoffMs(n)), [1000, 2000, 4000, 300_000, 300_000]);
  });
});
