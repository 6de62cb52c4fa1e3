// The coalescing runner behind the agent loop: bursts become one run, a request during a
// run becomes exactly one more, a retry waits its delay unless an event comes first, and
// stop waits for the run under way. Mocked timers: nothing here waits for real time.

import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, mock, test } from 'node:test';
import { backoffMs, CoalescingRunner } from '../../src/controller/runner.ts';

/** Lets every promise chain that is ready run. */
async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) await new Promise<void>((done) => setImmediate(done));
}

async function advance(ms: number): Promise<void> {
  await settle();
  mock.timers.tick(ms);
  await settle();
}

/** Work that stays "running" until the test lets it finish. */
function gatedWork(result: () => number | undefined = () => undefined) {
  const gates: Array<() => void> = [];
  let runs = 0;
  let concurrent = 0;
  let maxConcurrent = 0;
  return {
    get runs() {
      return runs;
    },
    get maxConcurrent() {
      return maxConcurrent;
    },
    finish: () => gates.shift()?.(),
    work: async () => {
      runs += 1;
      concurrent += 1;
      maxConcurrent = Math.max(maxConcurrent, concurrent);
      await new Promise<void>((done) => gates.push(done));
      concurrent -= 1;
      return result();
    },
  };
}

describe('CoalescingRunner', () => {
  beforeEach(() => mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 0 }));
  afterEach(() => mock.timers.reset());

  test('a burst of requests is one run, after the debounce', async () => {
    let runs = 0;
    const runner = new CoalescingRunner(
      async () => {
        runs += 1;
        return undefined;
      },
      { debounceMs: 20 },
    );
    for (let i = 0; i < 50; i++) runner.request();
    await advance(19);
    assert.equal(runs, 0, 'not before the debounce');
    await advance(1);
    assert.equal(runs, 1);
    await advance(1000);
    assert.equal(runs, 1);
    await runner.stop();
  });

  test('requests during a run give exactly one more run, never two at once', async () => {
    const w = gatedWork();
    const runner = new CoalescingRunner(w.work, { debounceMs: 5 });
    runner.request(0);
    await advance(0);
    assert.equal(w.runs, 1);
    for (let i = 0; i < 10; i++) runner.request();
    await advance(100);
    assert.equal(w.runs, 1, 'the requests wait for the run under way');
    w.finish();
    await advance(5);
    assert.equal(w.runs, 2, 'then one more run');
    w.finish();
    await advance(100);
    assert.deepEqual([w.runs, w.maxConcurrent], [2, 1]);
    await runner.stop();
  });

  test('a retry waits its delay, and an event before it runs at once', async () => {
    let runs = 0;
    const runner = new CoalescingRunner(
      async () => {
        runs += 1;
        return runs === 1 ? 10_000 : undefined;
      },
      { debounceMs: 5 },
    );
    runner.request(0);
    await advance(0);
    assert.equal(runs, 1);
    await advance(5000);
    assert.equal(runs, 1, 'the 10 s retry has not run yet');
    runner.request();
    await advance(5);
    assert.equal(runs, 2, 'the event ran before the retry was due');
    await advance(10_000);
    assert.equal(runs, 2, 'and the retry it replaced does not run');
    await runner.stop();
  });

  test('a retry runs when its delay is up', async () => {
    let runs = 0;
    const runner = new CoalescingRunner(
      async () => {
        runs += 1;
        return runs < 3 ? 1000 : undefined;
      },
      { debounceMs: 5 },
    );
    runner.request(0);
    await advance(0);
    await advance(999);
    assert.equal(runs, 1);
    await advance(1);
    assert.equal(runs, 2);
    await advance(1000);
    assert.equal(runs, 3);
    await advance(5000);
    assert.equal(runs, 3);
    await runner.stop();
  });

  test('stop waits for the run under way and prevents more', async () => {
    const w = gatedWork(() => 1);
    const runner = new CoalescingRunner(w.work, { debounceMs: 1 });
    runner.request(0);
    await advance(0);
    let stopped = false;
    const stopping = runner.stop().then(() => {
      stopped = true;
    });
    await settle();
    assert.equal(stopped, false, 'stop waits for the run');
    w.finish();
    await stopping;
    runner.request(0);
    await advance(100);
    assert.equal(w.runs, 1, 'no run after stop, not even the retry the last run asked for');
  });

  test('backoff doubles from 1 s to at most 5 min', () => {
    assert.deepEqual(
      [1, 2, 3, 10, 20].map((n) => backoffMs(n)),
      [1000, 2000, 4000, 300_000, 300_000],
    );
  });
});
