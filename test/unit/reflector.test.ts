// The reflector's supervision, driven by a scripted source (each list and watch call is
// answered from a script): what it does after 410, after a dropped watch, while the API
// server is away. The same code against the real API server is in test/cluster/.

import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, mock, test } from 'node:test';
import { Reflector } from '../../src/controller/reflector.ts';
import type { ListReason } from '../../src/controller/reflector.ts';
import type { ListPage, WatchHandlers } from '../../src/kube/client.ts';
import { ApiError } from '../../src/kube/client.ts';
import { createLogger } from '../../src/report/log.ts';

interface Item {
  name: string;
  v: string;
  rv?: string;
}

type WatchScript = (h: WatchHandlers) => void;

/** A source whose lists and watches follow the given scripts, in order; records the calls. */
function scripted(lists: Array<ListPage<Item> | Error>, watches: WatchScript[]) {
  const calls: string[] = [];
  return {
    calls,
    source: {
      what: 'items',
      list: async () => {
        const next = lists.shift();
        calls.push('list');
        if (next === undefined) return new Promise<ListPage<Item>>(() => {}); // hang: the test is over
        if (next instanceof Error) throw next;
        return next;
      },
      watch: async (rv: string, h: WatchHandlers) => {
        calls.push(`watch@${rv}`);
        const script = watches.shift();
        if (script !== undefined) setImmediate(() => script(h));
        return () => {};
      },
      fromWatch: (o: Record<string, unknown>): Item => {
        const { name, resourceVersion } = o.metadata as { name: string; resourceVersion?: string };
        return resourceVersion === undefined ? { name, v: String(o.v) } : { name, v: String(o.v), rv: resourceVersion };
      },
      key: (i: Item) => i.name,
      same: (a: Item, b: Item) => a.v === b.v,
      resourceVersion: (i: Item) => i.rv,
    },
  };
}

const obj = (name: string, v: string, rv: string) => ({ metadata: { name, resourceVersion: rv }, v });
const log = createLogger({ format: 'json', level: 'error' });
/** Lets every promise chain that is ready run (the scripts answer on setImmediate). */
async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise<void>((done) => setImmediate(done));
}

/** Moves the mocked clock 1 ms at a time (the backoffs here are 1-2 ms) until check holds. */
async function until(what: string, check: () => boolean): Promise<void> {
  await settle();
  for (let i = 0; i < 1000 && !check(); i++) {
    mock.timers.tick(1);
    await settle();
  }
  assert.ok(check(), `${what} did not happen within 1000 mocked ms`);
}

describe('Reflector', () => {
  beforeEach(() => mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 0 }));
  afterEach(() => mock.timers.reset());

  test('lists, then watches from the list resourceVersion; a closed watch resumes from the last one seen (bookmarks too)', async () => {
    const { source, calls } = scripted(
      [{ items: [{ name: 'a', v: '1' }], resourceVersion: '10' }],
      [
        (h) => {
          h.onEvent('MODIFIED', obj('a', '2', '11'));
          h.onEvent('BOOKMARK', { metadata: { resourceVersion: '15' } });
          h.onDone(undefined);
        },
      ],
    );
    let changes = 0;
    const r = new Reflector(source, { log, onChange: () => changes++, backoffMs: { first: 1, max: 2 } });
    r.start();
    await until('second watch', () => calls.length >= 3);
    assert.deepEqual(calls.slice(0, 3), ['list', 'watch@10', 'watch@15']);
    assert.equal(r.get('a')?.v, '2');
    assert.equal(changes, 2, 'the list and the modification; the bookmark is not a change');
    await r.stop();
  });

  test('handlers are told what changed: each watch event as old and current, a relist as all its differences in one call', async () => {
    const { source } = scripted(
      [
        {
          items: [
            { name: 'a', v: '1' },
            { name: 'b', v: '1' },
          ],
          resourceVersion: '10',
        },
        {
          items: [
            { name: 'a', v: '2' },
            { name: 'd', v: '1' },
          ],
          resourceVersion: '20',
        },
      ],
      [
        (h) => {
          h.onEvent('MODIFIED', obj('a', '2', '11'));
          h.onEvent('ADDED', obj('c', '1', '12'));
          h.onEvent('DELETED', obj('b', '1', '13'));
          h.onEvent('MODIFIED', obj('c', '1', '14')); // the same for the agent: not a change
          h.onEvent('ERROR', { kind: 'Status', code: 410, message: 'too old resource version' });
        },
      ],
    );
    const told: Array<Array<[string | undefined, string | undefined]>> = [];
    const label = (i: Item | undefined) => (i === undefined ? undefined : `${i.name}:${i.v}`);
    const r = new Reflector(source, {
      log,
      backoffMs: { first: 1, max: 2 },
      onChange: (changes) => told.push(changes.map((c) => [label(c.old), label(c.current)])),
    });
    r.start();
    await until('the relist', () => told.length >= 5);
    assert.deepEqual(told, [
      [
        [undefined, 'a:1'],
        [undefined, 'b:1'],
      ],
      [['a:1', 'a:2']],
      [[undefined, 'c:1']],
      [['b:1', undefined]],
      [
        [undefined, 'd:1'],
        ['c:1', undefined],
      ],
    ]);
    await r.stop();
  });

  test('410 Gone (an ERROR event or a refused watch) lists again, and the new list replaces the cache', async () => {
    const reasons: ListReason[] = [];
    const { source, calls } = scripted(
      [
        {
          items: [
            { name: 'a', v: '1' },
            { name: 'b', v: '1' },
          ],
          resourceVersion: '10',
        },
        { items: [{ name: 'a', v: '1' }], resourceVersion: '20' },
        { items: [{ name: 'a', v: '1' }], resourceVersion: '30' },
      ],
      [
        (h) =>
          h.onEvent('ERROR', { kind: 'Status', code: 410, reason: 'Expired', message: 'too old resource version' }),
        (h) => h.onDone(new ApiError(410, 'Gone')),
      ],
    );
    const r = new Reflector(source, {
      log,
      onChange: () => {},
      onList: (why) => reasons.push(why),
      backoffMs: { first: 1, max: 2 },
    });
    r.start();
    await until('third list', () => reasons.length >= 3);
    assert.deepEqual(calls.slice(0, 5), ['list', 'watch@10', 'list', 'watch@20', 'list']);
    assert.deepEqual(reasons, ['start', 'expired', 'expired']);
    assert.deepEqual(
      r.items().map((i) => i.name),
      ['a'],
      'b was deleted while the watch was expired: the relist removes it',
    );
    await r.stop();
  });

  test('while the API server is away the last known cache stays, synced stays true, and nothing is reported as changed', async () => {
    const down = new ApiError(0, 'connect ECONNREFUSED');
    const { source, calls } = scripted(
      [
        { items: [{ name: 'a', v: '1' }], resourceVersion: '10' },
        down,
        down,
        { items: [{ name: 'a', v: '1' }], resourceVersion: '40' },
      ],
      [
        (h) => h.onDone(down),
        (h) => h.onDone(down),
        (h) => h.onDone(down),
        (h) => h.onDone(down),
        (h) => h.onDone(down),
      ],
    );
    let changes = 0;
    const r = new Reflector(source, { log, onChange: () => changes++, backoffMs: { first: 1, max: 2 } });
    r.start();
    await until('the list after the server came back', () => calls.filter((c) => c === 'list').length >= 4);
    await settle();
    assert.deepEqual(
      calls.slice(0, 7),
      ['list', 'watch@10', 'watch@10', 'watch@10', 'watch@10', 'watch@10', 'list'],
      'watch retried from the same resourceVersion, then a fresh list after 5 failures in a row',
    );
    assert.equal(r.synced, true);
    assert.deepEqual(r.items(), [{ name: 'a', v: '1' }]);
    assert.equal(changes, 1, 'only the first list was a change');
    await r.stop();
  });

  test("a write's answer goes into the cache when it is newer, or created by it; an older or unparsable one is ignored", async () => {
    const { source } = scripted([{ items: [{ name: 'a', v: '1', rv: '10' }], resourceVersion: '10' }], []);
    let changes = 0;
    const r = new Reflector(source, { log, onChange: () => changes++ });
    r.start();
    await until('synced', () => r.synced);
    r.offer({ name: 'a', v: '2', rv: '12' });
    assert.deepEqual([r.get('a')?.v, changes], ['2', 2], 'newer: in, and a change');
    r.offer({ name: 'a', v: '3', rv: '11' });
    r.offer({ name: 'a', v: '4', rv: 'opaque-x' });
    r.offer({ name: 'b', v: '1', rv: '99' });
    assert.deepEqual([r.get('a')?.v, r.get('b'), changes], ['2', undefined, 2], 'older, unparsable, unknown: ignored');
    r.offer({ name: 'c', v: '1', rv: '100' }, { created: true });
    assert.deepEqual([r.get('c')?.v, changes], ['1', 3], 'unknown, from a write that created it: in, and a change');
    await r.stop();
  });

  test("a watch event older than a write's answer already in the cache is not put back (the write's own event comes later)", async () => {
    let deliver: () => void = () => {};
    const written = new Promise<void>((done) => {
      deliver = done;
    });
    const { source } = scripted(
      [{ items: [{ name: 'a', v: '1', rv: '10' }], resourceVersion: '10' }],
      [
        // The events of the two writes arrive only after both answers were offered.
        (h) =>
          void written.then(() => {
            h.onEvent('MODIFIED', obj('a', 'waiting', '11'));
            h.onEvent('MODIFIED', obj('a', 'ready', '12'));
            h.onEvent('MODIFIED', obj('a', 'changed by someone else', '13'));
          }),
      ],
    );
    const seen: string[] = [];
    const r = new Reflector(source, { log, onChange: (cs) => seen.push(...cs.map((c) => c.current?.v ?? '-')) });
    r.start();
    await until('synced', () => r.synced);
    // Two writes answered before their events arrive: waiting (11), then ready (12).
    r.offer({ name: 'a', v: 'waiting', rv: '11' });
    r.offer({ name: 'a', v: 'ready', rv: '12' });
    deliver();
    await until('the watch caught up', () => r.get('a')?.rv === '13');
    assert.deepEqual(seen, ['1', 'waiting', 'ready', 'changed by someone else'], 'no step back to "waiting"');
    await r.stop();
  });

  test('not synced until a list succeeds: a failing first list leaves it unsynced and empty', async () => {
    const { source, calls } = scripted([new ApiError(403, 'forbidden')], []);
    const r = new Reflector(source, { log, onChange: () => {}, backoffMs: { first: 1000, max: 1000 } });
    r.start();
    await settle();
    assert.deepEqual(calls, ['list'], 'the list was tried, and failed');
    assert.equal(r.synced, false);
    assert.deepEqual(r.items(), []);
    await r.stop();
  });
});
