// The TypeScript validator holds standalone manifests to the CRD's rules: it runs the same
// table of bad manifests the cluster test applies to a real API server.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseManifest, InputError } from '../../src/api/manifest.ts';
import { defaultLinkName, linkNameProblem } from '../../src/api/names.ts';
import { effectiveSpec, validateTunnel } from '../../src/api/validate.ts';
import type { IpipTunnel } from '../../src/api/types.ts';
import { assertSafeToken } from '../../src/dataplane/ip/render.ts';
import { ownerAlias, tunnelOfAlias } from '../../src/model/ownership.ts';
import { badTunnels, validTunnel } from '../harness/bad-tunnels.ts';

describe('validateTunnel', () => {
  test('accepts the example and the table\'s valid base', () => {
    assert.deepEqual(validateTunnel(validTunnel()), []);
  });
  for (const bad of badTunnels) {
    test(`rejects ${bad.name}, naming ${bad.field}`, () => {
      const errors = validateTunnel(bad.manifest);
      assert.ok(errors.some((e) => e.field.startsWith(bad.field)), `errors: ${JSON.stringify(errors)}`);
    });
  }
  test('rejects wrong types with the field named', () => {
    const m = validTunnel();
    m.spec.ttl = '64';
    m.spec.endpoints[0].networks = '10.0.0.0/8';
    assert.deepEqual(validateTunnel(m).map((e) => e.field), ['spec.ttl', 'spec.endpoints[0].networks']);
  });
  test('fills defaults: mode ipip, ttl 64, a derived link name', () => {
    const m = validTunnel() as unknown as IpipTunnel;
    delete m.spec.mode; delete m.spec.ttl; delete m.spec.linkName;
    const spec = effectiveSpec(m);
    assert.deepEqual([spec.mode, spec.ttl, spec.linkName], ['ipip', 64, 'ipip-lab']);
  });
});

describe('names', () => {
  test('derived link names are valid, at most 15 characters, and differ for long names sharing a prefix', () => {
    const a = defaultLinkName('production-east-1');
    const b = defaultLinkName('production-east-2');
    assert.notEqual(a, b);
    for (const n of [a, b, defaultLinkName('x'.repeat(63)), defaultLinkName('a.b')]) {
      assert.equal(linkNameProblem(n), undefined, n);
    }
    assert.equal(defaultLinkName('lab'), 'ipip-lab');
  });
  test('the ownership alias round-trips, and foreign aliases are not ours', () => {
    assert.equal(tunnelOfAlias(ownerAlias('lab')), 'lab');
    for (const alias of [undefined, '', 'calico', 'ipip-operator/', 'ipip-operator/Bad_Name']) assert.equal(tunnelOfAlias(alias), undefined);
  });
  test('the renderer refuses anything that could become an option, a second command or a comment', () => {
    for (const token of ['-force', 'a b', 'x#y', '"q"', "it's", 'a\nlink del dev eth0', '']) {
      assert.throws(() => assertSafeToken(token), /refusing/);
    }
    assert.equal(assertSafeToken('172.0.0.0/24'), '172.0.0.0/24');
  });
});

describe('parseManifest', () => {
  test('reads a multi-document file, skipping empty documents', () => {
    const text = 'apiVersion: tunnel.ipip-operator.dev/v1alpha1\nkind: IpipTunnel\nmetadata: {name: a}\nspec:\n  endpoints:\n  - {nodeName: n1, overlayAddress: 10.0.0.1}\n  - {nodeName: n2, overlayAddress: 10.0.0.2}\n---\n---\n';
    assert.deepEqual(parseManifest(text, 'f.yaml').map((t) => t.metadata.name), ['a']);
  });
  test('names the document and the field of every problem', () => {
    const text = 'apiVersion: tunnel.ipip-operator.dev/v1alpha1\nkind: IpipTunnel\nmetadata: {name: a}\nspec:\n  ttl: 999\n  endpoints:\n  - {nodeName: n1, overlayAddress: 10.0.0.1}\n  - {nodeName: n2, overlayAddress: 10.0.0.1}\n';
    assert.throws(() => parseManifest(text, 'f.yaml'), (e: Error) => {
      assert.ok(e instanceof InputError);
      assert.match(e.message, /f\.yaml: document 1 \(a\): spec\.ttl: /);
      assert.match(e.message, /spec\.endpoints\[1\]\.overlayAddress: 10\.0\.0\.1 is already/);
      return true;
    });
  });
  test('rejects two documents with one name, and YAML that does not parse', () => {
    const doc = 'apiVersion: tunnel.ipip-operator.dev/v1alpha1\nkind: IpipTunnel\nmetadata: {name: a}\nspec:\n  endpoints:\n  - {nodeName: n1, overlayAddress: 10.0.0.1}\n  - {nodeName: n2, overlayAddress: 10.0.0.2}\n';
    assert.throws(() => parseManifest(`${doc}---\n${doc}`, 'f.yaml'), /document 2 \(a\): metadata\.name: "a" is already document 1/);
    assert.throws(() => parseManifest('spec: [unclosed', 'f.yaml'), /not valid YAML/);
    assert.throws(() => parseManifest('kind: ConfigMap\n', 'f.yaml'), /kind: must be IpipTunnel/);
  });
});
