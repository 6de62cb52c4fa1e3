// The agent's log lines: what each line says, and that a pass's lines go out in one write
// with one clock read (the lab's guests pay a system call for each), and that lines
// logged just before the process exits are not lost.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, mock, test } from 'node:test';
import { createLogger } from '../../src/report/log.ts';
import { REPO } from '../harness/repo.ts';

/** A logger whose writes are kept, one entry per write. */
function capturing(format: 'json' | 'text') {
  const writes: string[] = [];
  const log = createLogger({ format, level: 'info', sink: (text) => writes.push(text) });
  return { log, writes };
}

/** Every microtask and nextTick queued so far has run. */
const settled = () => new Promise((done) => setImmediate(done));

describe('log lines', () => {
  test('the lines of one synchronous stretch are one write, in order, each a whole JSON line', async () => {
    const { log, writes } = capturing('json');
    for (let i = 0; i < 500; i++) log.info('kernel change', { tunnel: `t${i}`, object: 'route' });
    log.debug('not at this level');
    assert.equal(writes.length, 0, 'written before the stretch ended');
    await settled();
    assert.equal(writes.length, 1);
    const lines = writes[0]!.split('\n');
    assert.equal(lines.pop(), '', 'the write ends with a newline');
    assert.equal(lines.length, 500);
    lines.forEach((line, i) => {
      const entry = JSON.parse(line) as Record<string, unknown>;
      assert.equal(entry.message, 'kernel change');
      assert.equal(entry.level, 'info');
      assert.equal(entry.tunnel, `t${i}`);
      assert.match(String(entry.timestamp), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    });
  });

  test('a JSON line: level, message and timestamp first, then the fields as given; a BigInt or a cycle still makes a line', async () => {
    const { log, writes } = capturing('json');
    log.info('kernel change', {
      tunnel: 't1',
      object: 'route',
      detail: 'a "quoted" \\ value',
      commands: ['route add'],
    });
    const cycle: Record<string, unknown> = { name: 'c' };
    cycle.self = cycle;
    log.warn('odd fields', { count: 10n, cycle });
    await settled();
    const [plain, odd] = writes[0]!.trim().split('\n');
    assert.deepEqual(Object.keys(JSON.parse(plain!) as object), [
      'level',
      'message',
      'timestamp',
      'tunnel',
      'object',
      'detail',
      'commands',
    ]);
    assert.equal((JSON.parse(plain!) as { detail: string }).detail, 'a "quoted" \\ value');
    const entry = JSON.parse(odd!) as Record<string, unknown>;
    assert.equal(entry.message, 'odd fields');
    assert.equal(entry.count, '10');
    assert.equal((entry.cycle as Record<string, unknown>).self, '[Circular]');
  });

  test('the level: lines below it are not written, and isDebugEnabled says whether debug lines are', async () => {
    const writes: string[] = [];
    const warn = createLogger({ format: 'json', level: 'warn', sink: (text) => writes.push(text) });
    const debug = createLogger({ format: 'json', level: 'debug', sink: (text) => writes.push(text) });
    for (const log of [warn, debug]) {
      log.error('e');
      log.warn('w');
      log.info('i');
      log.debug('d');
    }
    await settled();
    const messages = writes.map((w) =>
      w
        .trim()
        .split('\n')
        .map((l) => (JSON.parse(l) as { message: string }).message),
    );
    assert.deepEqual(messages, [
      ['e', 'w'],
      ['e', 'w', 'i', 'd'],
    ]);
    assert.equal(warn.isDebugEnabled(), false);
    assert.equal(debug.isDebugEnabled(), true);
  });

  test("a field named level, message or timestamp does not replace the line's own", async () => {
    const { log, writes } = capturing('json');
    log.warn('watch failed', { message: 'too old', level: 'debug', timestamp: 'then', resource: 'nodes' });
    await settled();
    const entry = JSON.parse(writes[0]!) as Record<string, unknown>;
    assert.equal(entry.message, 'watch failed');
    assert.equal(entry.level, 'warn');
    assert.match(String(entry.timestamp), /^\d{4}-/);
    assert.equal(entry.resource, 'nodes');
  });

  test('a later stretch is a write of its own', async () => {
    const { log, writes } = capturing('text');
    log.warn('first', { tunnel: 'a' });
    await settled();
    log.error('second', { tunnel: 'b', detail: { n: 1 } });
    await settled();
    assert.equal(writes.length, 2);
    assert.match(writes[0]!, /^\S+Z warn first tunnel=a\n$/);
    assert.match(writes[1]!, /^\S+Z error second tunnel=b detail=\{"n":1\}\n$/);
  });

  test('the clock is read once per stretch: its lines share a timestamp, the next stretch reads it again', async (t) => {
    t.after(() => mock.timers.reset());
    mock.timers.enable({ apis: ['Date'], now: Date.parse('2026-01-01T00:00:00.000Z') });
    const { log, writes } = capturing('json');
    log.info('one');
    mock.timers.tick(1500);
    log.info('two');
    await settled();
    log.info('three');
    await settled();
    const stamps = writes
      .join('')
      .trim()
      .split('\n')
      .map((l) => (JSON.parse(l) as { timestamp: string }).timestamp);
    assert.deepEqual(stamps, ['2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:01.500Z']);
  });

  test('lines logged just before the process exits are written', () => {
    // The CLI's way out after a refusal: log, then exit 2 in the same stretch.
    const script =
      `import { createLogger } from ${JSON.stringify(join(REPO, 'src/report/log.ts'))};\n` +
      "const log = createLogger({ format: 'json', level: 'info' });\n" +
      "log.error('refused', { reason: 'RouteConflict' });\n" +
      "log.info('stopping');\n" +
      'process.exit(2);\n';
    const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
    assert.equal(child.status, 2, child.stderr);
    const lines = child.stderr.trim().split('\n');
    assert.deepEqual(
      lines.map((l) => (JSON.parse(l) as { message: string }).message),
      ['refused', 'stopping'],
    );
  });
});
