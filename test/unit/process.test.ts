// How the drivers start their tools (src/dataplane/process.ts): argument arrays that no
// shell reads, a whole answer and how the run ended, a missing tool or a hung one as a
// result (never a throw), and kept processes that do not outlive the agent. Stand-in scripts
// play the tools (the real `ip` and `nft` run on a real kernel in test/kernel/).

import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { runTool, startTool } from '../../src/dataplane/process.ts';
import { eventually } from '../harness/support.ts';

const dir = mkdtempSync(join(tmpdir(), 'ipip-process-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function standIn(name: string, script: string): string {
  const path = join(dir, name);
  writeFileSync(path, `#!/bin/sh\n${script}\n`);
  chmodSync(path, 0o755);
  return path;
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe('a run of a tool', () => {
  test('its input, its whole stdout and stderr, its exit status', async () => {
    const tool = standIn('upper', 'tr a-z A-Z; echo "two lines\nof stderr" >&2; exit 3');
    const input = `${'route add 10.0.0.0/24 dev t\n'.repeat(5000)}`;
    const r = await runTool(tool, [], { input, timeoutMs: 20_000 });
    assert.equal(r.stdout, input.toUpperCase());
    assert.equal(r.stderr, 'two lines\nof stderr\n');
    assert.equal(r.exitCode, 3);
    assert.equal(r.signal, undefined);
    assert.equal(r.code, undefined);
    assert.equal(r.timedOut, false);
  });

  test('each argument reaches the tool as it is: no shell reads it', async () => {
    const marker = join(dir, 'touched');
    const tool = standIn('args', 'for a in "$@"; do printf "%s\\n" "$a"; done');
    const args = [`$(touch ${marker})`, '; touch x', 'a b', '`id`', '"quoted"', ''];
    const r = await runTool(tool, args, { timeoutMs: 20_000 });
    assert.equal(r.exitCode, 0, r.stderr);
    assert.deepEqual(r.stdout.split('\n').slice(0, -1), args);
    assert.equal(existsSync(marker), false);
  });

  test('a tool that is not installed: a result with code ENOENT, no exit status', async () => {
    const r = await runTool(join(dir, 'no-such-tool'), ['-json'], { input: 'show\n', timeoutMs: 20_000 });
    assert.equal(r.code, 'ENOENT');
    assert.equal(r.exitCode, undefined);
    assert.equal(r.timedOut, false);
  });

  test('a tool that exits before reading its input: its exit, no EPIPE thrown', async () => {
    const tool = standIn('quits', 'echo early; exit 1');
    const r = await runTool(tool, [], { input: 'x'.repeat(4 << 20), timeoutMs: 20_000 });
    assert.equal(r.exitCode, 1);
    assert.equal(r.stdout, 'early\n');
  });

  test('a hung tool is stopped at its timeout, and the result says so', async () => {
    const pidFile = join(dir, 'hung.pid');
    const tool = standIn('hung', `echo $$ > ${pidFile}; exec sleep 600`);
    const r = await runTool(tool, [], { timeoutMs: 300 });
    assert.equal(r.timedOut, true);
    assert.equal(r.signal, 'SIGTERM');
    assert.equal(r.exitCode, undefined);
    assert.equal(alive(Number(readFileSync(pidFile, 'utf8'))), false);
  });

  test('onStarted is told the pid of the running tool', async () => {
    let told: number | undefined;
    const r = await runTool(standIn('pid', 'echo $$'), [], {
      timeoutMs: 20_000,
      onStarted: (pid) => {
        told = pid;
      },
    });
    assert.equal(r.stdout, `${told}\n`);
  });
});

describe('a kept process', () => {
  test("its streams are the caller's; its end says how it ended and what it last wrote to stderr", async () => {
    const tool = standIn('kept', 'read -r line; echo "got $line"; echo "monitor: gone" >&2; exit 4');
    const child = startTool(tool, [], { stdin: 'pipe' });
    const out: string[] = [];
    child.stdout.setEncoding('utf8').on('data', (c: string) => out.push(c));
    child.stdin?.write('hello\n');
    const exit = await child;
    assert.equal(exit.exitCode, 4);
    assert.equal(exit.stderr, 'monitor: gone\n');
    assert.equal(out.join(''), 'got hello\n');
  });

  test('a kept tool that is not installed ends with code ENOENT', async () => {
    const exit = await startTool(join(dir, 'no-such-monitor'), ['monitor'], { stdin: 'ignore' });
    assert.equal(exit.code, 'ENOENT');
    assert.equal(exit.exitCode, undefined);
  });

  test('killed, it ends with the signal', async () => {
    const child = startTool(standIn('forever', 'exec sleep 600'), [], { stdin: 'ignore' });
    child.kill();
    const exit = await child;
    assert.equal(exit.signal, 'SIGTERM');
  });

  test('a kept process ends when the agent exits', async () => {
    // An agent stand-in: starts a monitor that would run for ten minutes, then exits.
    const pidFile = join(dir, 'monitor.pid');
    const monitor = standIn('long-monitor', `echo $$ > ${pidFile}; exec sleep 600`);
    const script = join(dir, 'agent.ts');
    writeFileSync(
      script,
      `import { startTool } from ${JSON.stringify(join(import.meta.dirname, '../../src/dataplane/process.ts'))};\n` +
        `import { existsSync } from 'node:fs';\n` +
        `const child = startTool(${JSON.stringify(monitor)}, [], { stdin: 'ignore' });\n` +
        // Exits once the monitor has written its pid, with the monitor still running.
        `const wait = () => (existsSync(${JSON.stringify(pidFile)}) ? process.exit(0) : setTimeout(wait, 10));\n` +
        'wait();\n',
    );
    const r = await runTool(process.execPath, [script], { timeoutMs: 20_000 });
    assert.equal(r.exitCode, 0, r.stderr);
    const pid = Number(readFileSync(pidFile, 'utf8'));
    assert.ok(pid > 0);
    await eventually('the monitor to end with the agent', async () => !alive(pid));
  });
});
