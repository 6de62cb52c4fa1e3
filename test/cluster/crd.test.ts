// The IpipTunnel CRD against a real kube-apiserver: it installs, defaults what it
// should, and refuses every manifest in bad-tunnels.ts naming the offending field.
// Needs the binaries of scripts/cluster-tools.sh: built on first use (minutes), and
// this test FAILS (never skips) with an install hint when they cannot be built.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { startApiServer, type ApiServer } from '../harness/apiserver.ts';
import { badTunnels, validTunnel } from '../harness/bad-tunnels.ts';
import { REPO } from '../harness/repo.ts';
import { StartedByTest } from '../harness/support.ts';

const crdName = 'ipiptunnels.tunnel.ipip-operator.dev';

describe('IpipTunnel CRD on a real API server', () => {
  const api = new StartedByTest<ApiServer>('API server');
  const server = (): ApiServer => api.get();

  after(async () => {
    await api.started?.stop();
  });

  test('kube-apiserver starts and the CRD in crds/ becomes Established', async () => {
    await api.start(() => startApiServer());
    const applied = await server().kubectl(['apply', '-f', join(REPO, 'crds')]);
    assert.equal(applied.code, 0, `kubectl apply -f crds/ failed:\n${applied.stderr}`);
    const est = await server().kubectl(['wait', '--for=condition=Established', `crd/${crdName}`, '--timeout=60s']);
    assert.equal(est.code, 0, `CRD not Established:\n${est.stderr}`);
  });

  test('the CRD has no structural or CEL errors the API server would report', async () => {
    // A CEL rule that fails to compile or is over the cost budget makes the apply above
    // fail; NonStructuralSchema and friends show up as conditions instead.
    const r = await server().kubectl(['get', `crd/${crdName}`, '-o', 'json']);
    assert.equal(r.code, 0, r.stderr);
    const conditions: { type: string; status: string; message: string }[] = JSON.parse(r.stdout).status.conditions;
    const problems = conditions.filter(
      (c) => c.status === 'True' && !['Established', 'NamesAccepted'].includes(c.type),
    );
    assert.deepEqual(problems, []);
  });

  test('examples/tunnel.yaml is accepted as written', async () => {
    const r = await server().kubectl(['apply', '-f', join(REPO, 'examples/tunnel.yaml')]);
    assert.equal(r.code, 0, r.stderr);
    const got = await server().kubectl(['get', 'ipiptunnel', 'lab', '-o', 'json']);
    assert.equal(got.code, 0, got.stderr);
    const spec = JSON.parse(got.stdout).spec;
    assert.equal(spec.linkName, 'ipiptun');
    assert.deepEqual(spec.routes, ['172.0.0.0/24']);
    assert.deepEqual(
      spec.endpoints.map((e: { nodeName: string; overlayAddress: string }) => [e.nodeName, e.overlayAddress]),
      [
        ['node-a', '172.0.0.2'],
        ['node-b', '172.0.0.3'],
      ],
    );
  });

  test('mode and ttl are defaulted when omitted', async () => {
    const m = validTunnel('defaults');
    delete m.spec.mode;
    delete m.spec.ttl;
    const r = await server().kubectl(['apply', '-f', '-'], { input: JSON.stringify(m) });
    assert.equal(r.code, 0, r.stderr);
    const got = await server().kubectl(['get', 'ipiptunnel', 'defaults', '-o', 'json']);
    assert.equal(got.code, 0, got.stderr);
    const spec = JSON.parse(got.stdout).spec;
    assert.equal(spec.mode, 'ipip');
    assert.equal(spec.ttl, 64);
    assert.equal(spec.mtu, undefined, 'mtu has no schema default: the agent derives it from the underlay');
  });

  test('ttl 0 (inherit) and the valid base of the bad cases are accepted', async () => {
    // Guards the table below: every bad case must fail because of its mutation, not
    // because the base it starts from is already invalid.
    const m = validTunnel('base');
    m.spec.ttl = 0;
    const r = await server().kubectl(['apply', '-f', '-'], { input: JSON.stringify(m) });
    assert.equal(r.code, 0, r.stderr);
  });

  test('kubectl get ipt shows MODE, READY, AGE; -o wide the link, DEGRADED, its REASON and the MESSAGE; kubectl explain describes status', async () => {
    const m = validTunnel('wide');
    const applied = await server().kubectl(['apply', '-f', '-'], { input: JSON.stringify(m) });
    assert.equal(applied.code, 0, applied.stderr);
    // A status as the Lease holder writes it (no agent runs here).
    const at = '2026-01-01T00:00:00Z';
    const status = {
      observedGeneration: 1,
      readyEndpoints: 1,
      totalEndpoints: 2,
      readySummary: '1/2',
      conditions: [
        {
          type: 'Ready',
          status: 'False',
          reason: 'EndpointsNotReady',
          message: '1/2 endpoints ready; node-b: LinkNameTaken: ipiptun is not ours',
          observedGeneration: 1,
          lastTransitionTime: at,
        },
        {
          type: 'Degraded',
          status: 'True',
          reason: 'LinkNameTaken',
          message: 'node-b: LinkNameTaken: ipiptun is not ours',
          observedGeneration: 1,
          lastTransitionTime: at,
        },
      ],
    };
    const patched = await server().kubectl([
      'patch',
      'ipiptunnel',
      'wide',
      '--subresource=status',
      '--type=merge',
      '-p',
      JSON.stringify({ status }),
    ]);
    assert.equal(patched.code, 0, patched.stderr);
    const table = async (args: string[]) => {
      const r = await server().kubectl(['get', 'ipt', 'wide', ...args]);
      assert.equal(r.code, 0, r.stderr);
      const [header, row] = r.stdout.trimEnd().split('\n');
      return { header: header!.split(/\s{2,}/), row: row!.split(/\s{2,}/) };
    };
    const plain = await table([]);
    assert.deepEqual(plain.header, ['NAME', 'MODE', 'READY', 'AGE']);
    assert.deepEqual(plain.row.slice(0, 3), ['wide', 'ipip', '1/2']);
    const wide = await table(['-o', 'wide']);
    assert.deepEqual(wide.header, ['NAME', 'MODE', 'LINK', 'READY', 'DEGRADED', 'REASON', 'AGE', 'MESSAGE']);
    assert.deepEqual(
      [...wide.row.slice(0, 6), wide.row[7]],
      [
        'wide',
        'ipip',
        'ipiptun',
        '1/2',
        'True',
        'LinkNameTaken',
        '1/2 endpoints ready; node-b: LinkNameTaken: ipiptun is not ours',
      ],
    );
    // kubectl explain reads the published OpenAPI schema: the CRD's descriptions, status too.
    for (const [field, text] of [
      ['ipiptunnels.status.conditions.reason', 'One CamelCase word for why'],
      ['ipiptunnels.status.readyEndpoints', "How many endpoints' nodes report the tunnel programmed"],
      ['ipiptunnels.spec.endpoints.underlay.interface', 'The underlay interface on that node'],
      ['ipipnodes.tunnels.reason', 'Programmed, or why not'],
    ]) {
      const r = await server().kubectl(['explain', field!]);
      assert.equal(r.code, 0, r.stderr);
      assert.ok(r.stdout.replace(/\s+/g, ' ').includes(text!), `kubectl explain ${field}:\n${r.stdout}`);
    }
  });

  describe('bad manifests are refused, naming the field', () => {
    for (const bad of badTunnels) {
      test(`${bad.name} -> ${bad.field}`, async () => {
        const r = await server().kubectl(['apply', '-f', '-'], { input: JSON.stringify(bad.manifest) });
        if (r.code === 0) {
          // Do not leave it behind for the next cases; then fail.
          await server().kubectl(['delete', 'ipiptunnel', bad.manifest.metadata.name, '--ignore-not-found']);
          assert.fail(`accepted, but should be refused at ${bad.field}:\n${JSON.stringify(bad.manifest.spec)}`);
        }
        // "<path>: <reason>" is how the API server lists each error of an Invalid status.
        // The path must be followed by ':' so "spec.endpoints" does not match an error
        // about "spec.endpoints[0].overlayAddress".
        assert.ok(r.stderr.includes(`${bad.field}: `), `stderr does not name ${bad.field}:\n${r.stderr}`);
        assert.match(r.stderr, /is invalid|Invalid value|Unsupported value|Required value|Duplicate value/);
      });
    }
  });
});
