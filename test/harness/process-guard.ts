// What keeps test servers and guests from outliving the test process: cleanups that run
// on a normal exit and on fatal signals, and a parent-death signal for children, which
// also covers SIGKILL of the test process (no handler of ours runs then).

import { spawnSync } from 'node:child_process';

const cleanups = new Set<() => void>();
let hooksInstalled = false;

/**
 * Runs `cleanup` when the process exits or dies of SIGINT/SIGTERM/SIGHUP, unless the
 * returned function unregisters it first (call that from the normal stop path). Must be
 * synchronous: nothing asynchronous runs in an 'exit' handler.
 */
export function onProcessExit(cleanup: () => void): () => void {
  installHooks();
  cleanups.add(cleanup);
  return () => {
    cleanups.delete(cleanup);
  };
}

function runAll(): void {
  for (const cleanup of [...cleanups]) {
    cleanups.delete(cleanup);
    try {
      cleanup();
    } catch {
      // One failed cleanup must not keep the others from running.
    }
  }
}

function installHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', runAll);
  // A fatal signal skips 'exit' handlers: clean up, then die of the same signal.
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      runAll();
      process.kill(process.pid, sig);
    });
  }
}

let setprivCache: boolean | undefined;
function hasSetpriv(): boolean {
  setprivCache ??= spawnSync('setpriv', ['--pdeathsig', 'KILL', '--', 'true']).status === 0;
  return setprivCache;
}

/**
 * The command line that runs `cmd args` with SIGKILL as its parent-death signal, so the
 * kernel kills it when the test process dies, even by SIGKILL. setpriv and `ip netns
 * exec` both exec in place, so the signal reaches the real program; it is not inherited
 * by that program's own children. Without setpriv, onProcessExit still covers normal
 * exits and fatal signals.
 */
export function withPdeathsig(cmd: string, args: string[]): [string, string[]] {
  return hasSetpriv() ? ['setpriv', ['--pdeathsig', 'KILL', '--', cmd, ...args]] : [cmd, args];
}

/** `cmd args` inside a network namespace when one is given. */
export function inNetns(netns: string | undefined, cmd: string, args: string[]): [string, string[]] {
  return netns === undefined ? [cmd, args] : ['ip', ['netns', 'exec', netns, cmd, ...args]];
}

/** Whether a process exists (EPERM: it does, but is not ours to signal). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
