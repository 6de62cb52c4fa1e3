// How the agent finds its API server and credentials (src/kube/config.ts): kubeconfig files
// merged as kubectl merges them, the pod's ServiceAccount, and every kubeconfig feature the
// agent does not support refused by name rather than ignored.

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import {
  accessFromKubeConfigs,
  inClusterAccess,
  KubeConfigError,
  loadClusterAccess,
  rereadToken,
} from '../../src/kube/config.ts';

const dir = mkdtempSync(join(tmpdir(), 'ipip-kubeconfig-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function kubeconfig(o: { cluster?: object; user?: object; context?: string; current?: string; name?: string }): string {
  const name = o.name ?? 'lab';
  return JSON.stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name, cluster: o.cluster ?? { server: 'https://10.0.0.1:6443' } }],
    users: [{ name, user: o.user ?? { token: `token-of-${name}` } }],
    contexts: [{ name, context: { cluster: name, user: name } }],
    ...(o.current === undefined
      ? { 'current-context': name }
      : o.current === ''
        ? {}
        : { 'current-context': o.current }),
  });
}

const noFiles = (path: string): Buffer => {
  throw new Error(`ENOENT: ${path}`);
};

function refusal(f: () => unknown): string {
  try {
    f();
  } catch (error) {
    assert.ok(error instanceof KubeConfigError, `not a KubeConfigError: ${String(error)}`);
    return error.message;
  }
  assert.fail('accepted');
}

describe('kubeconfig', () => {
  test('a token and an inline CA: the server, the CA bytes and the token', () => {
    const ca = Buffer.from('-----BEGIN CERTIFICATE-----\nlab\n-----END CERTIFICATE-----\n');
    const text = kubeconfig({
      cluster: { server: 'https://10.0.0.1:6443', 'certificate-authority-data': ca.toString('base64') },
    });
    const access = accessFromKubeConfigs([{ path: '/etc/kc', text }], noFiles);
    assert.equal(access.server, 'https://10.0.0.1:6443');
    assert.deepEqual(access.ca, ca);
    assert.equal(access.token(), 'token-of-lab');
    assert.equal(access.insecure, false);
    assert.equal(access.clientCert, undefined);
  });

  test("client certificate files are read relative to the kubeconfig's own directory", () => {
    const read: string[] = [];
    const text = kubeconfig({
      cluster: { server: 'https://api:6443', 'certificate-authority': 'pki/ca.crt', 'tls-server-name': 'kubernetes' },
      user: { 'client-certificate': 'pki/agent.crt', 'client-key': '/abs/agent.key' },
    });
    const access = accessFromKubeConfigs([{ path: '/etc/ipip/kubeconfig', text }], (p) => {
      read.push(p);
      return Buffer.from(p);
    });
    assert.deepEqual(read.sort(), ['/abs/agent.key', '/etc/ipip/pki/agent.crt', '/etc/ipip/pki/ca.crt']);
    assert.equal(String(access.clientCert), '/etc/ipip/pki/agent.crt');
    assert.equal(String(access.clientKey), '/abs/agent.key');
    assert.equal(access.tlsServerName, 'kubernetes');
    assert.equal(access.token(), undefined);
  });

  test('$KUBECONFIG merged: the first file to name an entry wins, and the first current-context', () => {
    const first = kubeconfig({ name: 'a', current: '' });
    const second = JSON.stringify({
      clusters: [
        { name: 'a', cluster: { server: 'https://second-a' } },
        { name: 'b', cluster: { server: 'https://b' } },
      ],
      users: [{ name: 'a', user: { token: 'second' } }],
      'current-context': 'a',
    });
    const access = accessFromKubeConfigs(
      [
        { path: '/one', text: first },
        { path: '/two', text: second },
      ],
      noFiles,
    );
    assert.equal(access.server, 'https://10.0.0.1:6443');
    assert.equal(access.token(), 'token-of-a');
    assert.equal(access.source, '/one:/two');
  });

  test('what the agent does not support is refused by its name, not ignored', () => {
    const exec = kubeconfig({ user: { exec: { command: 'aws', apiVersion: 'client.authentication.k8s.io/v1' } } });
    assert.match(
      refusal(() => accessFromKubeConfigs([{ path: '/kc', text: exec }], noFiles)),
      /\/kc: user "lab" sets "exec", which the agent does not support: give it a token/,
    );
    const basic = kubeconfig({ user: { username: 'admin', password: 'x' } });
    assert.match(
      refusal(() => accessFromKubeConfigs([{ path: '/kc', text: basic }], noFiles)),
      /sets "username"/,
    );
    const proxy = kubeconfig({ cluster: { server: 'https://api', 'proxy-url': 'http://proxy:3128' } });
    assert.match(
      refusal(() => accessFromKubeConfigs([{ path: '/kc', text: proxy }], noFiles)),
      /cluster "lab" sets "proxy-url"/,
    );
  });

  test('a broken kubeconfig says what is wrong and where', () => {
    const cases: [string, RegExp][] = [
      [kubeconfig({ current: '' }), /\/kc: no current-context/],
      [kubeconfig({ current: 'prod' }), /current-context "prod" is not among its contexts/],
      [kubeconfig({ cluster: { server: 'api:6443' } }), /cluster "lab" has no http\(s\) server URL/],
      [kubeconfig({ user: { 'client-certificate-data': 'eA==' } }), /a client certificate or key without the other/],
      [
        kubeconfig({ cluster: { server: 'https://api', 'certificate-authority': 'ca.crt' } }),
        /\/kc: certificate-authority \/ca.crt: ENOENT/,
      ],
      ['clusters: [', /\/kc: not YAML/],
      ['- 1\n- 2\n', /\/kc: not a kubeconfig/],
      [JSON.stringify({ clusters: [{ cluster: {} }] }), /clusters\[0\] has no name/],
      [
        JSON.stringify({ contexts: [{ name: 'x', context: { cluster: 'y', user: 'z' } }], 'current-context': 'x' }),
        /context "x" names no cluster that is defined \(y\)/,
      ],
    ];
    for (const [text, expected] of cases)
      assert.match(
        refusal(() => accessFromKubeConfigs([{ path: '/kc', text }], noFiles)),
        expected,
      );
  });

  test('a token file is read again once it changed, at most once a minute', () => {
    const path = join(dir, 'token');
    writeFileSync(path, 'first\n');
    let now = 1_000_000;
    const token = rereadToken(path, () => now);
    assert.equal(token(), 'first');
    writeFileSync(path, 'second\n');
    utimesSync(path, new Date(), new Date(Date.now() + 5_000)); // a new mtime even on a coarse clock
    now += 59_000;
    assert.equal(token(), 'first', 'not looked at within the minute');
    now += 2_000;
    assert.equal(token(), 'second');
    rmSync(path);
    now += 61_000;
    assert.equal(token(), 'second', 'a file that went away keeps the last token');
  });

  test("in a pod: the API server's Service from the environment, the ServiceAccount's CA and token", () => {
    const sa = join(dir, 'serviceaccount');
    mkdirSync(sa, { recursive: true });
    writeFileSync(join(sa, 'ca.crt'), 'CA');
    writeFileSync(join(sa, 'token'), 'sa-token');
    const v4 = inClusterAccess({ KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' }, sa);
    assert.equal(v4.server, 'https://10.96.0.1:443');
    assert.equal(String(v4.ca), 'CA');
    assert.equal(v4.token(), 'sa-token');
    assert.equal(
      inClusterAccess({ KUBERNETES_SERVICE_HOST: 'fd00::1', KUBERNETES_SERVICE_PORT: '6443' }, sa).server,
      'https://[fd00::1]:6443',
    );
    assert.match(
      refusal(() => inClusterAccess({ KUBERNETES_SERVICE_HOST: '10.96.0.1' }, join(dir, 'none'))),
      /ServiceAccount is not mounted/,
    );
  });

  test('which one: --kubeconfig, then $KUBECONFIG, then the pod; a missing file is named', () => {
    const one = join(dir, 'one.kubeconfig');
    const two = join(dir, 'two.kubeconfig');
    writeFileSync(one, kubeconfig({ name: 'one' }));
    writeFileSync(two, kubeconfig({ name: 'two' }));
    const pod = { KUBERNETES_SERVICE_HOST: '10.96.0.1' };
    assert.equal(loadClusterAccess(one, { ...pod, KUBECONFIG: two }).token(), 'token-of-one');
    assert.equal(
      loadClusterAccess(undefined, { ...pod, KUBECONFIG: `${join(dir, 'absent')}:${two}` }).token(),
      'token-of-two',
    );
    assert.match(
      refusal(() => loadClusterAccess(join(dir, 'absent'), {})),
      /absent: ENOENT/,
    );
    assert.match(
      refusal(() => loadClusterAccess(undefined, { KUBECONFIG: join(dir, 'absent') })),
      /absent: ENOENT/,
    );
  });
});
