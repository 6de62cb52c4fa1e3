// What the agent loads at start-up. Standalone (a manifest, no cluster) and `plan` must not
// load the API client (src/kube/) or the metrics library (prom-client costs about 20 MiB
// of RSS, bench/RESULTS.md), which a node without a cluster should never pay. main.ts loads
// the cluster path (cli/cluster-agent.ts) only for `agent` without --manifest.
//
// Each command runs in a child process with a module hook (module.registerHooks) that
// writes every module URL the process loaded to a file when it exits, and Node's own list of
// the built-in modules it loaded (process.moduleLoadList).

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
process.on('exit', () => writeFileSync(process.env.LOADED_OUT, [...loaded, ...process.moduleLoadList].join('\\n')));
`;
const hook = join(dir, 'hook.mjs');
writeFileSync(hook, HOOK);

interface Loaded {
  code: number | null;
  /** The packages under node_modules, and src/kube as the package it replaced. */
  packages: Set<string>;
  /** Node's built-in modules, internal ones included ("internal/deps/undici/undici"). */
  builtins: Set<string>;
  stderr: string;
}

/** What a run of the CLI loaded, and its exit code. */
function packagesLoaded(...args: string[]): Loaded {
  const out = join(dir, `loaded-${Math.random().toString(36).slice(2)}.txt`);
  const r = spawnSync(process.execPath, ['--import', hook, join(REPO, 'src/cli/main.ts'), ...args], {
    encoding: 'utf8',
    env: { ...process.env, LOADED_OUT: out, NODE_NAME: '', KUBECONFIG: join(dir, 'no-kubeconfig') },
    timeout: 60_000,
  });
  const urls = readFileSync(out, 'utf8').split('\n');
  const packages = new Set<string>();
  const builtins = new Set<string>();
  for (const url of urls) {
    if (url.startsWith('NativeModule ')) builtins.add(url.slice('NativeModule '.length));
    const m = /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url);
    if (m !== null) packages.add(m[1]!);
    // The API client is ours (src/kube/), so it counts as the package it replaced.
    if (url.startsWith(`file://${REPO}/src/kube/`)) packages.add('src/kube');
  }
  return { code: r.status, packages, builtins, stderr: r.stderr };
}

const CLUSTER_ONLY = ['prom-client', 'src/kube'];
/**
 * Node's fetch and WebSocket, which the agent never uses: 7 MiB of RSS and 1,700 page faults
 * at start-up, loaded by any ES module import of node:http (kube/client.ts).
 */
const UNDICI = 'internal/deps/undici/undici';

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
    // The manifest's parser is the one package it loads: its tools start through
    // src/dataplane/process.ts, its logs are src/report/log.ts (bench/RESULTS.md, "Start-up").
    assert.deepEqual([...r.packages], ['js-yaml']);
    // It loaded node:http (its /metrics and probes server), without undici.
    assert.ok(r.builtins.has('http'), [...r.builtins].join(' '));
    assert.ok(!r.builtins.has(UNDICI), 'the standalone agent loaded undici');
  });

  test('the cluster agent does load them (so the checks above can see them)', () => {
    // No cluster configured: the agent gives up loading the configuration (exit 2), after
    // main.ts has loaded the cluster path.
    const r = packagesLoaded('agent', '--node-name', 'node-a', '--kubeconfig', join(dir, 'missing-kubeconfig'));
    assert.equal(r.code, 2, r.stderr);
    for (const name of CLUSTER_ONLY) assert.ok(r.packages.has(name), `the cluster agent did not load ${name}`);
    assert.ok(r.builtins.has('https') && r.builtins.has('http'), [...r.builtins].join(' '));
    assert.ok(!r.builtins.has(UNDICI), 'the cluster agent loaded undici');
  });

  test('an import of node:http loads undici, which is why the agent does not import it', () => {
    // The check above can see undici: this child imports node:http as an ES module does.
    const out = join(dir, 'import-http.txt');
    const script = `import 'node:http'; import { writeFileSync } from 'node:fs'; writeFileSync(${JSON.stringify(out)}, process.moduleLoadList.join('\\n'));`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(r.status, 0, r.stderr);
    assert.ok(readFileSync(out, 'utf8').split('\n').includes(`NativeModule ${UNDICI}`));
  });
});
