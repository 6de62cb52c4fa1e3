// What loading the agent costs in a User-Mode Linux guest (issue 14, start-up in the lab):
//   node bench/startup.ts [RUNS] [GIT-REF...]
// The agent bundled as the image ships it (`npm run bundle`, into a directory of its own),
// of the working tree and of each GIT-REF given (its src/ and package-lock's packages, from
// `git worktree`), then, in one guest of the lab kernel, RUNS times each (after one run
// that fills the page cache): `node -e 0` (Node alone), the cluster agent loaded up to its
// configuration (no kubeconfig: exit 2 once the cluster path is loaded), the standalone
// agent up to its manifest (a missing one: exit 2). Prints the wall-clock seconds of each
// run and the median. In these guests a page fault costs about 100 µs and a fork of the
// agent about 0.1 s, so start-up is mostly what the agent touches: the host's page faults
// for the same commands are in bench/memory.ts ("its page faults").

import { execFileSync } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { labKernel } from '../test/harness/lab-kernel.ts';
import { REPO } from '../test/harness/repo.ts';
import { Guest, shellQuote } from '../test/harness/uml.ts';

const runs = Number(process.argv[2] ?? 7);
const refs = process.argv.slice(3);
if (!Number.isInteger(runs) || runs < 1) throw new Error('usage: node bench/startup.ts [RUNS >= 1] [GIT-REF...]');
// Not under /tmp, which is the guest's own.
const work = mkdtempSync(join('/var/tmp', 'ipip-startup-'));
const node = join(REPO, 'node_modules/.bin/node');

/** `npm run bundle` of a tree, into DIR/dist (package.json beside it, as in the image). */
function bundle(tree: string, dir: string): string {
  execFileSync('npm', ['run', '--silent', 'bundle', '--', `--outdir=${join(dir, 'dist/cli')}`], {
    cwd: tree,
    stdio: 'inherit',
  });
  cpSync(join(tree, 'package.json'), join(dir, 'package.json'));
  return join(dir, 'dist/cli/main.js');
}

const builds: [string, string][] = [['working tree', bundle(REPO, join(work, 'tree'))]];
for (const ref of refs) {
  const tree = join(work, `wt-${builds.length}`);
  execFileSync('git', ['-C', REPO, 'worktree', 'add', '--detach', '-q', tree, ref]);
  execFileSync('npm', ['ci', '--ignore-scripts', '--no-audit', '--no-fund', '--loglevel=error'], {
    cwd: tree,
    stdio: 'inherit',
  });
  builds.push([ref, bundle(tree, join(work, `b-${builds.length}`))]);
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const guest = await Guest.boot({ memMB: 1024, kernel: await labKernel() });
try {
  // Each with what it must say, so that a run that failed early is not timed.
  const cases: [string, string, RegExp][] = [['node -e 0', `${node} -e 0`, /^$/]];
  for (const [name, main] of builds) {
    cases.push(
      [
        `${name}: cluster agent, loaded`,
        `NODE_NAME=x KUBECONFIG=/nonexistent ${node} --max-semi-space-size=2 ${main} agent`,
        /cannot load the cluster configuration/,
      ],
      [
        `${name}: standalone agent, loaded`,
        `${node} --max-semi-space-size=2 ${main} agent --manifest /nonexistent --node-name x`,
        /cannot read the manifest/,
      ],
    );
  }
  process.stdout.write(`| what | median (s) | runs (s) |\n|---|---:|---|\n`);
  for (const [name, cmd, says] of cases) {
    const once = await guest.sh(`${cmd} 2>&1`, 120_000);
    if (!says.test(once.stdout.trim())) throw new Error(`${name}: it said ${JSON.stringify(once.stdout)}`);
    const script = `TIMEFORMAT=%R; for i in $(seq 0 ${runs}); do { time ${cmd} >/dev/null 2>&1; } 2>&1; done`;
    const r = await guest.sh(`bash -c ${shellQuote(script)}`, 600_000);
    const times = r.stdout.trim().split('\n').slice(1).map(Number); // the first filled the page cache
    if (times.length !== runs || times.some((t) => !Number.isFinite(t)))
      throw new Error(`${name}: ${r.stdout}${r.stderr}`);
    process.stdout.write(`| ${name} | ${median(times).toFixed(2)} | ${times.map((t) => t.toFixed(2)).join(' ')} |\n`);
  }
} finally {
  await guest.stop();
  for (let i = 1; i < builds.length; i++)
    execFileSync('git', ['-C', REPO, 'worktree', 'remove', '--force', join(work, `wt-${i}`)]);
  rmSync(work, { recursive: true, force: true });
}
