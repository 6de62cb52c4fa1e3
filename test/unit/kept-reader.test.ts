// The drivers' kept reader (src/dataplane/kept-reader.ts): one process kept for every read,
// one line per command (or as many as the read says), a failed or silent process replaced,
// and an idle one never holding the agent's process open. Stand-in scripts play the process
// (what the real `ip` and `nft` print is proven on a real kernel: test/kernel/ip-reader.test.ts,
// test/kernel/nft-driver.test.ts).

import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { IpDriver, namesCacheVerdict } from '../../src/dataplane/ip/driver.ts';
import type { KernelState } from '../../src/model/kernel.ts';
import { KeptReader } from '../../src/dataplane/kept-reader.ts';
import { runTool, startTool } from '../../src/dataplane/process.ts';
import { eventually } from '../harness/support.ts';

const dir = mkdtempSync(join(tmpdir(), 'ipip-ip-reader-'));
function standIn(name: string, script: string): string {
  const path = join(dir, name);
  writeFileSync(path, `#!/bin/sh\n${script}\n`);
  chmodSync(path, 0o755);
  return path;
}
/** Answers each command with a JSON array holding the command, as `ip -json -batch -` answers a show. */
const ECHO = standIn('echo-ip', 'while read -r line; do echo "[\\"$line\\"]"; done');
/** Fails at a command "fail", as `ip` without -force does: the error on stderr, then exit 1. */
const FAILING = standIn(
  'failing-ip',
  'while read -r line; do if [ "$line" = fail ]; then echo "Error: no such thing." >&2; exit 1; fi; echo "[]"; done',
);
/** Reads and never answers. */
const SILENT = standIn('silent-ip', 'cat > /dev/null');
/** Answers each command in two writes, a line in pieces as a long dump comes. */
const PIECES = standIn(
  'pieces-ip',
  'while read -r line; do printf \'["%s"\' "$line"; sleep 0.05; printf \']\\n\'; done',
);
/** As `nft -i` does: a command "missing" answers on stderr only, the others with a line. */
const ERRORS = standIn(
  'errors-nft',
  'while read -r line; do if [ "$line" = missing ]; then echo "Error: No such file or directory" >&2; else echo "[\\"$line\\"]"; fi; done',
);
/** Answers every command twice. */
const TWICE = standIn('twice-ip', 'while read -r line; do echo "[1]"; echo "[2]"; done');

/** A reader of a stand-in, counting its starts and ends. */
function readerOf(path: string, timeoutMs = 5000) {
  const counts = { started: 0, ended: [] as boolean[] };
  const reader = new KeptReader({
    tool: 'ip',
    start: () => {
      counts.started += 1;
      return startTool(path, [], { stdin: 'pipe' });
    },
    timeoutMs,
    onEnd: (_seconds, stopped) => counts.ended.push(stopped),
  });
  return { reader, counts };
}

describe("the ip driver's reader", () => {
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('one process answers every read, a line per command, reads asked at once each getting their own', async () => {
    const { reader, counts } = readerOf(ECHO);
    assert.deepEqual(await reader.read(['address show', 'route show table main']), {
      lines: ['["address show"]', '["route show table main"]'],
      process: 1,
    });
    const answers = await Promise.all([reader.read(['a']), reader.read(['b', 'bb']), reader.read(['c'])]);
    assert.deepEqual(
      answers.map((a) => a.lines),
      [['["a"]'], ['["b"]', '["bb"]'], ['["c"]']],
    );
    assert.equal(counts.started, 1, 'one process for four reads');
    reader.stop();
  });

  test('a read that says when it is complete: a command answered on stderr only gives no line', async () => {
    const { reader, counts } = readerOf(ERRORS);
    const untilEnd = (lines: readonly string[]) => lines.at(-1) === '["end"]';
    assert.deepEqual(await reader.read(['missing', 'end'], untilEnd), { lines: ['["end"]'], process: 1 });
    assert.deepEqual(await reader.read(['there', 'end'], untilEnd), { lines: ['["there"]', '["end"]'], process: 1 });
    assert.equal(counts.started, 1);
    reader.stop();
  });

  test('a line that comes in pieces is one answer', async () => {
    const { reader } = readerOf(PIECES);
    assert.deepEqual((await reader.read(['address show', 'route show'])).lines, ['["address show"]', '["route show"]']);
    reader.stop();
  });

  test('a command that ends the process fails that read with what ip said; the next read starts a new process', async () => {
    const { reader, counts } = readerOf(FAILING);
    assert.deepEqual(await reader.read(['x']), { lines: ['[]'], process: 1 });
    await assert.rejects(reader.read(['fail']), { message: 'ip exited (1): Error: no such thing.' });
    assert.deepEqual(await reader.read(['x', 'y']), { lines: ['[]', '[]'], process: 2 });
    assert.equal(counts.started, 2);
    assert.deepEqual(counts.ended, [false], 'the failed process was counted as an error');
    reader.stop();
  });

  test('a read with no answer in time kills the process; the next read gets a new one', async () => {
    const { reader, counts } = readerOf(SILENT, 200);
    await assert.rejects(reader.read(['address show']), { message: 'no answer in 200 ms' });
    await assert.rejects(reader.read(['address show']), { message: 'no answer in 200 ms' });
    assert.equal(counts.started, 2);
    reader.stop();
  });

  test('a line no read asked for retires the process: its lines are no longer known to be whose', async () => {
    const { reader, counts } = readerOf(TWICE);
    assert.deepEqual((await reader.read(['x'])).lines, ['[1]']);
    // The second "[2]" arrives with no read waiting: that process is killed, the next read starts another.
    await eventually('the answered-twice process to end', async () => counts.ended.length === 1, { intervalMs: 10 });
    assert.deepEqual(await reader.read(['x', 'y']), { lines: ['[1]', '[2]'], process: 2 });
    assert.equal(counts.started, 2);
    reader.stop();
  });

  test('stop ends the process, counted as stopped; a later read starts another', async () => {
    const { reader, counts } = readerOf(ECHO);
    assert.equal((await reader.read(['x'])).process, 1);
    reader.stop();
    assert.equal((await reader.read(['y'])).process, 2);
    await eventually('the stopped process to end', async () => counts.ended.length === 1, { intervalMs: 10 });
    assert.deepEqual(counts.ended, [true]);
    reader.stop();
  });

  test("the driver's read: links and routes of one request; a failure says it was the read", async () => {
    const driver = new IpDriver({ ipPath: standIn('empty-ip', 'while read -r line; do echo "[]"; done') });
    assert.deepEqual(await driver.observe(), { links: [], routes: [] });
    // An exit gets one more try from a new process (the dead one may have had the read
    // before its exit was seen); a second exit is the answer.
    const reads: boolean[] = [];
    const failing = new IpDriver({
      ipPath: standIn('gone-ip', 'echo "Cannot open netlink socket" >&2; exit 1'),
      onCommand: (_tool, purpose, _seconds, ok) => {
        if (purpose === 'observe') reads.push(ok);
      },
    });
    await assert.rejects(failing.observe(), {
      message: 'ip: reading links and routes failed: ip exited (1): Cannot open netlink socket',
    });
    assert.deepEqual(reads, [false, false]);
    driver.stop();
  });

  test("an idle reader does not keep the agent's process alive, and its process ends with it", async () => {
    const pidFile = join(dir, 'reader.pid');
    const echo = standIn('pid-echo-ip', `echo $$ > ${pidFile}\nwhile read -r line; do echo "[]"; done`);
    const script = join(dir, 'idle.ts');
    writeFileSync(
      script,
      `import { IpDriver } from ${JSON.stringify(join(import.meta.dirname, '../../src/dataplane/ip/driver.ts'))};\n` +
        `const driver = new IpDriver({ ipPath: ${JSON.stringify(echo)} });\n` +
        'console.log(JSON.stringify(await driver.observe()));\n',
    );
    const run = await runTool(process.execPath, [script], { timeoutMs: 20_000 });
    assert.equal(run.timedOut, false, 'the process ended by itself after its read');
    assert.equal(run.stdout, '{"links":[],"routes":[]}\n');
    assert.equal(run.exitCode, 0, run.stderr);
    // Its end closed the reader's input: the reader saw the end of it and exited.
    const pid = Number(readFileSync(pidFile, 'utf8'));
    await eventually('the reader process to end', async () => {
      try {
        process.kill(pid, 0);
        return false;
      } catch {
        return true;
      }
    });
  });
});

describe("a kept reader's names of devices, against what its process has seen", () => {
  const link = (index: number, name: string, underlayDevice?: string) => ({
    index,
    name,
    group: 0,
    up: true,
    mtu: 1480,
    addresses: [],
    ...(underlayDevice === undefined
      ? {}
      : {
          kind: 'ipip',
          tunnel: { mode: 'ipip' as const, local: '192.168.40.2', remote: '10.0.0.1', ttl: 64, underlayDevice },
        }),
  });
  const route = (dev: string) => ({ dst: '10.77.0.0/24', dev, protocol: 203, metric: 0, scope: 0, type: 1 });
  const state = (links: KernelState['links'], routes: KernelState['routes'] = []): KernelState => ({ links, routes });

  test('names its own dump has, for indexes seen with those names: fresh', () => {
    const seen = new Map<number, string>();
    assert.equal(namesCacheVerdict(seen, state([link(1, 'eth1'), link(2, 'tun0', 'eth1')], [route('tun0')])), 'fresh');
    assert.equal(namesCacheVerdict(seen, state([link(1, 'eth1'), link(3, 'tun1')], [route('tun1')])), 'fresh');
    assert.deepEqual(
      [...seen],
      [
        [1, 'eth1'],
        [2, 'tun0'],
        [3, 'tun1'],
      ],
    );
  });

  test('an index seen before under another name: stale, whatever the routes say', () => {
    const seen = new Map([[2, 'tun0']]);
    assert.equal(namesCacheVerdict(seen, state([link(2, 'tun9')], [route('tun9')])), 'stale');
    assert.equal(namesCacheVerdict(new Map([[2, 'tun0']]), state([link(2, 'tun9')], [route('tun0')])), 'stale');
  });

  test("a route's device or a tunnel's underlay its dump does not have: looked up", () => {
    assert.equal(namesCacheVerdict(new Map(), state([link(1, 'eth1')], [route('tun5')])), 'looked up');
    assert.equal(namesCacheVerdict(new Map(), state([link(2, 'tun0', 'eth7')])), 'looked up');
  });
});
