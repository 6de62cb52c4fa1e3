// The CLI as a user runs it: `plan --from-scratch` prints the exact commands and touches
// nothing; bad input exits 2 with the field or flag named.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { REPO } from '../harness/repo.ts';

function cli(...args: string[]) {
  const r = spawnSync(process.execPath, [join(REPO, 'src/cli/main.ts'), ...args], {
    encoding: 'utf8',
    cwd: REPO,
    env: { ...process.env, NODE_NAME: '' },
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('ipip-operator CLI', () => {
  test('plan --from-scratch prints the recipe for each node of the example', () => {
    const a = cli('plan', '-f', 'examples/tunnel.yaml', '--node', 'node-a', '--from-scratch');
    assert.equal(a.code, 0, a.stderr);
    assert.equal(
      a.stdout,
      [
        'ip link add name ipiptun mtu 1480 group 203 type ipip local 192.168.40.2 remote 192.168.40.3 ttl 64 dev eth1',
        'ip link set dev ipiptun alias ipip-operator/lab',
        'ip link set dev ipiptun up',
        'ip address add 172.0.0.2/32 peer 172.0.0.3/32 dev ipiptun',
        'ip route replace 172.0.0.0/24 dev ipiptun proto 203',
        '',
      ].join('\n'),
    );
    const b = cli('plan', '-f', 'examples/tunnel.yaml', '--node', 'node-b', '--from-scratch');
    assert.match(
      b.stdout,
      /^ip link add name ipiptun mtu 1480 group 203 type ipip local 192\.168\.40\.3 remote 192\.168\.40\.2 ttl 64 dev eth1$/m,
    );
    assert.match(b.stdout, /^ip address add 172\.0\.0\.3\/32 peer 172\.0\.0\.2\/32 dev ipiptun$/m);
  });

  test('plan for a node that is not an endpoint prints nothing', () => {
    const r = cli('plan', '-f', 'examples/tunnel.yaml', '--node', 'node-z', '--from-scratch');
    assert.deepEqual([r.code, r.stdout], [0, '']);
  });

  test('a bad manifest exits 2 naming the field', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ipip-cli-'));
    const file = join(dir, 'bad.yaml');
    writeFileSync(
      file,
      'apiVersion: tunnel.ipip-operator.dev/v1alpha1\nkind: IpipTunnel\nmetadata: {name: x}\nspec:\n ' +
        ' linkName: "a b"\n  endpoints:\n  - {nodeName: node-a, overlayAddress: 10.0.0.1}\n  - {nodeName: ' +
        'node-b, overlayAddress: 10.0.0.2}\n',
    );
    const r = cli('plan', '-f', file, '--node', 'node-a', '--from-scratch');
    rmSync(dir, { recursive: true, force: true });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /spec\.linkName/);
    assert.equal(r.stdout, '');
  });

  test('missing and malformed flags exit 2 with what is wrong', () => {
    assert.match(cli('agent', '--manifest', 'examples/tunnel.yaml', '--once').stderr, /--node-name is required/);
    assert.equal(cli('agent', '--manifest', 'examples/tunnel.yaml', '--once').code, 2);
    const bad = cli('agent', '--manifest', 'examples/tunnel.yaml', '--node-name', 'Node_A', '--once');
    assert.deepEqual([bad.code, /--node-name: "Node_A"/.test(bad.stderr)], [2, true]);
    const level = cli('agent', '--manifest', 'examples/tunnel.yaml', '--node-name', 'node-a', '--log-level', 'loud');
    assert.deepEqual([level.code, /--log-level/.test(level.stderr)], [2, true]);
    const unknown = cli('plan', '--frobnicate');
    assert.deepEqual([unknown.code, /frobnicate/.test(unknown.stderr)], [2, true]);
    const missing = cli('plan', '-f', '/nonexistent.yaml', '--node', 'node-a');
    assert.deepEqual([missing.code, /nonexistent/.test(missing.stderr)], [2, true]);
  });

  test('cluster-mode flags are checked before anything connects: exit 2 naming the flag', () => {
    const expect = (args: string[], flag: RegExp) => {
      const r = cli('agent', '--node-name', 'node-a', ...args);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, flag);
    };
    expect(['--metrics-address', 'everywhere'], /--metrics-address: listen address must be HOST:PORT or :PORT/);
    expect(['--health-address', ':99999'], /--health-address/);
    expect(['--lease-namespace', 'Not_A_Namespace'], /--lease-namespace: "Not_A_Namespace"/);
    expect(['--once'], /--once needs --manifest/);
    expect(
      ['--kubeconfig', '/nonexistent/kubeconfig'],
      /cannot load the cluster configuration: .*\/nonexistent\/kubeconfig/,
    );
  });

  test('a manifest that is not a regular file, or too large, exits 2 before anything is read or parsed', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ipip-cli-'));
    const big = join(dir, 'big.yaml');
    writeFileSync(big, `# ${'x'.repeat(8 * 1024 * 1024)}\n`);
    const cases: Array<[string, RegExp]> = [
      [dir, /not a regular file/],
      ['/dev/zero', /not a regular file/],
      [big, /more than the 8388608 bytes a manifest may have/],
      [join(dir, 'missing.yaml'), /cannot read the manifest: no such file/],
    ];
    for (const [path, message] of cases) {
      for (const args of [
        ['plan', '-f', path, '--node', 'node-a', '--from-scratch'],
        ['agent', '--once', '--manifest', path, '--node-name', 'node-a'],
      ]) {
        const r = cli(...args);
        assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
        assert.match(r.stderr, message);
        assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
      }
    }
    rmSync(dir, { recursive: true, force: true });
  });

  test('a resync period a timer cannot hold, or a busy loop, exits 2 naming the bounds', () => {
    for (const period of ['0s', '500ms', '25h', '30000000s', '1e3s', '-5s']) {
      const r = cli(
        'agent',
        '--once',
        '--manifest',
        'examples/tunnel.yaml',
        '--node-name',
        'node-a',
        '--resync-period',
        period,
      );
      assert.equal(r.code, 2, `${period}: ${r.stderr}`);
      assert.match(r.stderr, /--resync-period/);
    }
    assert.match(
      cli('agent', '--once', '--manifest', 'examples/tunnel.yaml', '--node-name', 'node-a', '--resync-period', '25h')
        .stderr,
      /outside 1s to 24h/,
    );
    assert.match(cli('help').stdout, /--resync-period DUR\s+full resync period, 1s to 24h/);
  });

  test('version prints the package version', () => {
    assert.match(cli('version').stdout, /^\d+\.\d+\.\d+\n$/);
  });
});
