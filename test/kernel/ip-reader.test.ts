// The ip driver's reader (src/dataplane/ip/reader.ts) on a real kernel with the real `ip`:
// its reads name links and routes as a new `ip` process would, after a rename (which a
// kept process's cache of names gets wrong: the driver reads again from a new process) and
// after a device's name comes back on a new one; a reader killed or hung is replaced. The
// driver runs in the guest (test/harness/reader-guest.ts).

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { guestScriptResult, setUpTwoHosts } from '../harness/two-hosts.ts';
import { Guest } from '../harness/uml.ts';

interface Step {
  reader?: { links: string[]; routes: string[] };
  fresh?: { links: string[]; routes: string[] };
  readers: string[];
  error?: string;
}

describe("the ip driver's reader on a real kernel", { timeout: 300_000 }, () => {
  let guest: Guest;
  let steps: Record<'first' | 'renamed' | 'recreated' | 'killed' | 'stopped' | 'afterStopped', Step> & {
    readerEnds: boolean[];
    monitor: { devBefore: string; devAfter: string; unreadable: number; monitors: [string, string] };
  };
  before(async () => {
    guest = await Guest.boot();
    await setUpTwoHosts(guest);
    steps = await guestScriptResult(guest, 'test/harness/reader-guest.ts', 120_000);
  });
  after(async () => {
    await guest?.stop();
  });

  const linkIndex = (step: Step, name: string) => step.reader?.links.find((l) => l.startsWith(`${name}#`));

  test('after a rename, and after a name comes back on a new device, the reader reads what a new ip does', () => {
    for (const name of ['first', 'renamed', 'recreated'] as const) {
      const step = steps[name];
      assert.equal(step.error, undefined, `${name}: ${step.error}`);
      assert.deepEqual(step.reader, step.fresh, `${name}: the kept reader and a new ip agree`);
    }
    assert.deepEqual(steps.first.reader!.routes, ['10.77.0.0/24 dev rd0']);
    assert.deepEqual(steps.renamed.reader!.routes, ['10.77.0.0/24 dev rd1'], 'the route on the renamed device');
    assert.equal(linkIndex(steps.renamed, 'rd0'), undefined);
    assert.deepEqual(steps.recreated.reader!.routes, ['10.77.1.0/24 dev rd0'], "the old device's route went with it");
    assert.notEqual(linkIndex(steps.recreated, 'rd0'), linkIndex(steps.first, 'rd0'), 'rd0 has a new index');
    for (const name of ['first', 'renamed', 'recreated'] as const) assert.equal(steps[name].readers.length, 1);
    // The old process would have named the route "rd0": its cache keeps the first name of an index.
    assert.notDeepEqual(steps.renamed.readers, steps.first.readers, 'the rename: read again by a new process');
    assert.deepEqual(steps.recreated.readers, steps.renamed.readers, 'a name on a new index: the same process');
  });

  test('a reader killed between reads is replaced at the next read', () => {
    assert.equal(steps.killed.error, undefined, steps.killed.error);
    assert.deepEqual(steps.killed.reader, steps.killed.fresh);
    assert.equal(steps.killed.readers.length, 1);
    assert.notDeepEqual(steps.killed.readers, steps.first.readers, 'a new process');
  });

  test('a reader that never answers fails that read in its time; the next read gets a new process', () => {
    assert.equal(steps.stopped.error, 'ip: reading links and routes failed: no answer in 2000 ms');
    assert.equal(steps.afterStopped.error, undefined, steps.afterStopped.error);
    assert.deepEqual(steps.afterStopped.reader, steps.afterStopped.fresh);
    assert.equal(steps.afterStopped.readers.length, 1, 'the stopped one was killed');
    assert.notDeepEqual(steps.afterStopped.readers, steps.killed.readers);
    // ip_commands_total{purpose="reader"} when each ended: the one retired after the rename
    // as stopped (success), the killed and the hung one as errors.
    assert.deepEqual(steps.readerEnds.slice(0, 3), [true, false, false]);
  });

  test("after a rename the monitor names a route's device by its new name: a new monitor process, the view untrusted", () => {
    const m = steps.monitor;
    assert.equal(m.devBefore, 'mon0');
    // One process kept would have said mon0: the same cache of names as the reader's.
    assert.equal(m.devAfter, 'mon1');
    assert.notEqual(m.monitors[1], m.monitors[0], 'a new monitor process');
    assert.equal(m.unreadable, 1, 'the view is not trusted until the next read');
  });
});
