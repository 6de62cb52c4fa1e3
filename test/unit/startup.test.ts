// What the agent loads at start-up. Standalone (a manifest, no cluster) and `plan` must not
// load the API client (src/kube/) or the metrics library (prom-client costs about 20 MiB
// of RSS, bench/RESULTS.md), which a node without a cluster should never pay. main.ts loads
// the cluster path (cli/cluster-agent.ts) only for `agent` without --manifest.
//
// Each command runs in a child process with a module hook (module.registerHooks) that
// writes every module URL the process loaded to a file when it exits.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { REPO } from '../harness/repo.ts';

const dir = mkdtempSync(join(tmpdir(), 'ipip-startup-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const HOOK = `
import { registerHooks } from 'node:module';
import { writeFileSync } from 'node:fs';
const loaded = [];
registerHooks({ load(url, context, next) { loaded.push(url); return next(url, context); } });
process.on('exit', () => writeFileSync(process.env.LOADED_OUT, loaded.join('\\n')));
`;
const hook = join(dir, 'hook.mjs');
writeFileSync(hook, HOOK);

/** The packages under node_modules and the folders of src/ a run of the CLI loaded, and its exit code. */
function packagesLoaded(...args: string[]): { code: number | null; packages: Set<string>; stderr: string } {
  const out = join(dir, `loaded-${Math.random().toString(36).slice(2)}.txt`);
  const r = spawnSync(process.execPath, ['--import', hook, join(REPO, 'src/cli/main.ts'), ...args], {
    encoding: 'utf8',
    env: { ...process.env, LOADED_OUT: out, NODE_NAME: '', KUBECONFIG: join(dir, 'no-kubeconfig') },
    timeout: 60_000,
  });
  const urls = readFileSync(out, 'utf8').split('\n');
  const packages = new Set<string>();
  for (const url of urls) {
    const m = /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url);
    if (m !== null) packages.add(m[1]!);
    // The API client is ours (src/kube/), so it counts as the package it replaced.
    if (url.startsWith(`file://${REPO}/src/kube/`)) packages.add('src/kube');
  }
  return { code: r.status, packages, stderr: r.stderr };
}

const CLUSTER_ONLY = ['prom-client', 'src/kube'];

describe('start-up: what each command loads', () => {
  test('plan loads neither the Kubernetes client nor prom-client', () => {
    const r = packagesLoaded('plan', '-f', join(REPO, 'examples/tunnel.yaml'), '--node', 'node-a', '--from-scratch');
    assert.equal(r.code, 0, r.stderr);
    // It did load what planning needs (the YAML parser), so the hook saw the packages it loads.
    assert.ok(r.packages.has('js-yaml'), [...r.packages].join(' '));
    for (const name of CLUSTER_ONLY) assert.ok(!r.packages.has(name), `plan loaded ${name}`);
  });

  test('the standalone agent loads neither the Kubernetes client nor prom-client', () => {
    // A manifest that does not exist: the agent stops at reading it (exit 2), after main.ts
    // has loaded everything the standalone path imports, and before anything touches the kernel.
    const r = packagesLoaded('agent', '--manifest', join(dir, 'missing.yaml'), '--node-name', 'node-a', '--once');
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /cannot read the manifest/);
    assert.ok(r.packages.has('execa') && r.packages.has('winston'), [...r.packages].join(' '));
    for (const name of CLUSTER_ONLY) assert.ok(!r.packages.has(name), `the standalone agent loaded ${name}`);
  });

  test('the cluster agent does load them (so the checks above can see them)', () => {
    // No cluster configured: the agent gives up loading the configuration (exit 2), after
    // main.ts has loaded the cluster path.
    const r = packagesLoaded('agent', '--node-name', 'node-a', '--kubeconfig', join(dir, 'missing-kubeconfig'));
    assert.equal(r.code, 2, r.stderr);
    for (const name of CLUSTER_ONLY) assert.ok(r.packages.has(name), `the cluster agent did not load ${name}`);
  });
});
