// Runs inside a UML guest: reads commands from the console, one base64 JSON line each,
// runs them with sh, and answers with one marked base64 JSON line. Each line read is
// acknowledged at once, so the host sends the next (uml.ts): the console loses input
// when several KiB arrive together. Test-only tooling: the product itself never runs a shell.

import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

export const READY = '@@GUEST-READY@@';
export const RESULT = '@@GUEST-RESULT@@';
export const ACK = '@@GUEST-ACK@@';

interface Request {
  id: number;
  cmd: string;
  timeoutMs: number;
}

// Raw mode: no echo of what the host sends, no line-length limit, no \r\n translation.
if (process.stdin.isTTY) process.stdin.setRawMode(true);

function answer(payload: object): void {
  process.stdout.write(`\n${RESULT} ${Buffer.from(JSON.stringify(payload)).toString('base64')}\n`);
}

function run(req: Request): void {
  const child = spawn('sh', ['-c', req.cmd], { stdio: ['ignore', 'pipe', 'pipe'] });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout.on('data', (d: Buffer) => out.push(d));
  child.stderr.on('data', (d: Buffer) => err.push(d));
  const timer = setTimeout(() => child.kill('SIGKILL'), req.timeoutMs);
  // A command that cannot even start (E2BIG: an argument over 128 KiB) is answered too, or
  // the host would wait for it forever.
  child.on('error', (error) => {
    clearTimeout(timer);
    answer({
      id: req.id,
      code: -1,
      signal: null,
      stdout: '',
      stderr: `guest-shell: cannot run the command: ${error.message}`,
    });
  });
  child.on('close', (code, signal) => {
    clearTimeout(timer);
    answer({
      id: req.id,
      code: code ?? (signal === null ? -1 : 128),
      signal,
      stdout: Buffer.concat(out).toString(),
      stderr: Buffer.concat(err).toString(),
    });
  });
}

const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
/** The parts of a request so far: uml.ts sends long requests in lines, each but the last starting with "+". */
let parts: string[] = [];
lines.on('line', (line) => {
  const text = line.replace(/\r/g, '').trim();
  if (text === '') return;
  if (text === 'exit') {
    process.exit(0);
  }
  process.stdout.write(`\n${ACK}\n`);
  if (text.startsWith('+')) {
    parts.push(text.slice(1));
    return;
  }
  const whole = [...parts, text].join('');
  parts = [];
  try {
    run(JSON.parse(Buffer.from(whole, 'base64').toString()) as Request);
  } catch (error) {
    answer({ id: -1, code: -1, stdout: '', stderr: `guest-shell: bad request: ${String(error)}` });
  }
});
process.stdout.write(`\n${READY}\n`);
