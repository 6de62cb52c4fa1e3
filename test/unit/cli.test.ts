// The CLI as a user runs it: `plan --from-scratch` prints the exact commands and touches
// nothing; bad input exits 2 with the field or flag named.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { REPO } from '../harness/repo.ts';

const PACKAGE_VERSION = (JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string }).version;

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
    assert.match(
      cli('agent', '--help').stdout,
      /--resync-period duration\s+full resync period, 1s to 24h \(default 60s\)/,
    );
  });

  test('version prints the package version', () => {
    assert.deepEqual(cli('version'), { code: 0, stdout: `${PACKAGE_VERSION}\n`, stderr: '' });
  });

  test('--version and -v exit 0 and print "ipip-operator version X", as a Go (cobra) command does', () => {
    for (const flag of ['--version', '-v']) {
      assert.deepEqual(cli(flag), { code: 0, stdout: `ipip-operator version ${PACKAGE_VERSION}\n`, stderr: '' }, flag);
    }
  });

  test('--help, -h and help exit 0 and print the commands, the flags and where more help is', () => {
    const help = cli('--help');
    assert.deepEqual([help.code, help.stderr], [0, '']);
    for (const args of [['-h'], ['help']]) assert.deepEqual(cli(...args), help, args.join(' '));
    assert.match(help.stdout, /^Usage:\n {2}ipip-operator \[command\]$/m);
    for (const command of ['agent', 'help', 'plan', 'version']) {
      assert.match(help.stdout, new RegExp(`^ {2}${command} +[A-Z]`, 'm'), `"${command}" under Available Commands`);
    }
    assert.match(help.stdout, /^ {2}-h, --help +help for ipip-operator$/m);
    assert.match(help.stdout, /^ {2}-v, --version +version for ipip-operator$/m);
    assert.match(help.stdout, /^Use "ipip-operator \[command\] --help" for more information about a command\.$/m);
  });

  test("each command's --help (or -h, or help COMMAND) exits 0, runs nothing, and lists its flags", () => {
    const flags: Record<string, string[]> = {
      agent: [
        '--node-name string',
        '--kubeconfig string',
        '--metrics-address string',
        '--health-address string',
        '--lease-namespace string',
        '--manifest string',
        '--once',
        '--resync-period duration',
        '--log-format string',
        '--log-level string',
        '-h, --help',
      ],
      plan: ['-f, --file string', '--node string', '--from-scratch', '-h, --help'],
      version: ['-h, --help'],
    };
    for (const [command, listed] of Object.entries(flags)) {
      const help = cli(command, '--help');
      assert.deepEqual([help.code, help.stderr], [0, ''], `${command} --help`);
      assert.deepEqual(cli(command, '-h'), help, `${command} -h`);
      assert.deepEqual(cli('help', command), help, `help ${command}`);
      assert.match(help.stdout, new RegExp(`^Usage:\\n {2}ipip-operator ${command} `, 'm'));
      const section = help.stdout.split(/^Flags:\n/m)[1]?.split(/\n\n/)[0] ?? '';
      const got = section
        .split('\n')
        .map((l) => /^ +((?:-\w, )?--[\w-]+(?: [a-z]+)?)(?: {2,}|$)/.exec(l)?.[1])
        .filter((f) => f !== undefined);
      assert.deepEqual(got.sort(), [...listed].sort(), `${command} --help lists its flags`);
      assert.match(help.stdout, new RegExp(`^ +-h, --help +help for ${command}$`, 'm'));
    }
    // With --help the other flags are neither checked nor used: nothing runs, nothing is read.
    assert.equal(cli('agent', '--node-name', 'Not_A_Node', '--manifest', '/nonexistent', '--help').code, 0);
    assert.equal(cli('plan', '-f', '/nonexistent.yaml', '-h').code, 0);
  });

  test('no command, an unknown command or help topic exit 2 with the help or where it is on stderr', () => {
    const none = cli();
    assert.deepEqual([none.code, none.stdout], [2, '']);
    assert.match(none.stderr, /^Usage:$/m);
    for (const args of [['frobnicate'], ['help', 'frobnicate']]) {
      const r = cli(...args);
      assert.deepEqual([r.code, r.stdout], [2, ''], args.join(' '));
      assert.match(r.stderr, /frobnicate[\s\S]*Run 'ipip-operator --help' for usage\./);
    }
    assert.match(cli('plan', '--frobnicate').stderr, /Run 'ipip-operator plan --help' for usage\./);
  });
});
