// The TypeScript validator holds standalone manifests to the CRD's rules: it runs the same
// table of bad manifests the cluster test applies to a real API server.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { InputError, MAX_MANIFEST_BYTES, parseManifest } from '../../src/api/manifest.ts';
import { defaultLinkName, linkNameProblem } from '../../src/api/names.ts';
import { effectiveSpec, shown, validateTunnel } from '../../src/api/validate.ts';
import type { IpipTunnel } from '../../src/api/types.ts';
import { assertSafeToken } from '../../src/dataplane/ip/render.ts';
import { ownerAlias, tunnelOfAlias } from '../../src/model/ownership.ts';
import { badTunnels, validTunnel } from '../harness/bad-tunnels.ts';

describe('validateTunnel', () => {
  test("accepts the example and the table's valid base", () => {
    assert.deepEqual(validateTunnel(validTunnel()), []);
  });
  for (const bad of badTunnels) {
    test(`rejects ${bad.name}, naming ${bad.field}`, () => {
      const errors = validateTunnel(bad.manifest);
      assert.ok(
        errors.some((e) => e.field.startsWith(bad.field)),
        `errors: ${JSON.stringify(errors)}`,
      );
    });
  }
  test('rejects wrong types with the field named', () => {
    const m = validTunnel();
    m.spec.ttl = '64';
    m.spec.endpoints[0].networks = '10.0.0.0/8';
    assert.deepEqual(
      validateTunnel(m).map((e) => e.field),
      ['spec.ttl', 'spec.endpoints[0].networks'],
    );
  });
  test('fills defaults: mode ipip, ttl 64, a derived link name', () => {
    const m = validTunnel() as unknown as IpipTunnel;
    delete m.spec.mode;
    delete m.spec.ttl;
    delete m.spec.linkName;
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
    for (const alias of [undefined, '', 'calico', 'ipip-operator/', 'ipip-operator/Bad_Name'])
      assert.equal(tunnelOfAlias(alias), undefined);
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
    const text =
      'apiVersion: tunnel.ipip-operator.dev/v1alpha1\nkind: IpipTunnel\nmetadata: {name: a}\nspec:\n ' +
      ' endpoints:\n  - {nodeName: n1, overlayAddress: 10.0.0.1}\n  - {nodeName: n2, overlayAddress: ' +
      '10.0.0.2}\n---\n---\n';
    assert.deepEqual(
      parseManifest(text, 'f.yaml').map((t) => t.metadata.name),
      ['a'],
    );
  });
  test('names the document and the field of every problem', () => {
    const text =
      'apiVersion: tunnel.ipip-operator.dev/v1alpha1\nkind: IpipTunnel\nmetadata: {name: a}\nspec:\n ' +
      ' ttl: 999\n  endpoints:\n  - {nodeName: n1, overlayAddress: 10.0.0.1}\n  - {nodeName: n2, overlayAddress: ' +
      '10.0.0.1}\n';
    assert.throws(
      () => parseManifest(text, 'f.yaml'),
      (e: Error) => {
        assert.ok(e instanceof InputError);
        assert.match(e.message, /f\.yaml: document 1 \(a\): spec\.ttl: /);
        assert.match(e.message, /spec\.endpoints\[1\]\.overlayAddress: 10\.0\.0\.1 is already/);
        return true;
      },
    );
  });
  test('rejects two documents with one name, and YAML that does not parse', () => {
    const doc =
      'apiVersion: tunnel.ipip-operator.dev/v1alpha1\nkind: IpipTunnel\nmetadata: {name: a}\nspec:\n ' +
      ' endpoints:\n  - {nodeName: n1, overlayAddress: 10.0.0.1}\n  - {nodeName: n2, overlayAddress: ' +
      '10.0.0.2}\n';
    assert.throws(
      () => parseManifest(`${doc}---\n${doc}`, 'f.yaml'),
      /document 2 \(a\): metadata\.name: "a" is already document 1/,
    );
    assert.throws(() => parseManifest('spec: [unclosed', 'f.yaml'), /not valid YAML/);
    // The line is the file's (document 2 starts on line 9), not the document's.
    assert.throws(
      () => parseManifest(`${doc}---\nkind: a\nkind: b\n`, 'f.yaml'),
      /f\.yaml: document 2: not valid YAML: duplicated mapping key \(line 10, column 1\)/,
    );
    assert.throws(() => parseManifest('kind: ConfigMap\n', 'f.yaml'), /kind: must be IpipTunnel/);
  });
});

describe('bad input of every kind: a message naming what is wrong, never a crash', () => {
  const doc = (spec: string) =>
    `apiVersion: tunnel.ipip-operator.dev/v1alpha1\nkind: IpipTunnel\nmetadata: {name: a}\nspec:\n${spec}`;
  const endpoints =
    '  endpoints:\n  - {nodeName: n1, overlayAddress: 10.0.0.1}\n  - {nodeName: n2, overlayAddress: 10.0.0.2}\n';

  test('an unknown field anywhere is refused by name, as kubectl strict field validation does (a typo is not a default)', () => {
    assert.throws(() => parseManifest(doc(`  tll: 32\n${endpoints}`), 'f.yaml'), /spec\.tll: unknown field "tll"/);
    const m = validTunnel();
    (m as Record<string, unknown>).spce = {};
    (m.metadata as Record<string, unknown>).lables = {};
    m.spec.endpoints[0].underlay.adress = '192.168.40.9';
    m.spec.endpoints[1].overlay = '172.0.0.9';
    assert.deepEqual(
      validateTunnel(m)
        .map((e) => e.field)
        .sort(),
      ['metadata.lables', 'spce', 'spec.endpoints[0].underlay.adress', 'spec.endpoints[1].overlay'],
    );
    const saved = validTunnel();
    Object.assign(saved.metadata, {
      uid: 'u',
      resourceVersion: '5',
      generation: 2,
      labels: { a: 'b' },
      annotations: {},
    });
    assert.deepEqual(
      validateTunnel({ ...saved, status: { readySummary: '2/2' } }),
      [],
      'what kubectl get -o yaml prints is fine',
    );
  });

  test('an overlay address that is an underlay address of the tunnel is refused', () => {
    const m = validTunnel();
    m.spec.endpoints[1].overlayAddress = '192.168.40.2';
    assert.deepEqual(
      validateTunnel(m).map((e) => e.field),
      ['spec.endpoints[1].overlayAddress'],
    );
    assert.match(validateTunnel(m)[0]!.message, /is the underlay address of spec\.endpoints\[0\]/);
  });

  test("a standalone manifest's status is ignored: nothing there is published by an agent", () => {
    const text = `${doc(endpoints)}status:\n  endpoints: [{nodeName: n2, underlayAddress: 10.9.9.9}]\n`;
    assert.equal(parseManifest(text, 'f.yaml')[0]!.status, undefined);
  });

  test('YAML built to exhaust memory or the stack is refused as input', () => {
    // A "billion laughs": level k is 9 aliases of level k-1. Parsed, each alias is one shared
    // object, so the text stays small; walked or printed, level 7 is 9^7 (4.8 million) "lol"s.
    const laughs = (levels: number, at: string) => {
      const lines = ['x0: &x0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'];
      for (let k = 1; k <= levels; k++)
        lines.push(
          `x${k}: &x${k} [${Array(9)
            .fill(`*x${k - 1}`)
            .join(',')}]`,
        );
      return doc(`${endpoints}${lines.map((l) => `  ${l}\n`).join('')}${at}: *x${levels}\n`);
    };
    // 12 levels are 108 aliases, more than the parser takes: refused before anything walks it.
    assert.throws(
      () => parseManifest(laughs(12, '  mode'), 'f.yaml'),
      (e: Error) => e instanceof InputError && /not valid YAML: aliases exceeded maxAliases \(100\)/.test(e.message),
    );
    // 7 levels (63 aliases) parse; a message that shows the value shows its kind, not 4.8 million members.
    assert.throws(
      () => parseManifest(laughs(7, '  mode'), 'f.yaml'),
      (e: Error) =>
        e instanceof InputError &&
        /spec\.mode: must be "ipip" \(the only mode so far\), got a list/.test(e.message) &&
        e.message.length < 2000,
    );
    const deep = `${'['.repeat(50_000)}${']'.repeat(50_000)}`;
    assert.throws(
      () => parseManifest(deep, 'f.yaml'),
      (e: Error) => e instanceof InputError && /document 1: not valid YAML: nesting exceeded maxDepth/.test(e.message),
    );
  });

  test('a value in a message is shown short: a scalar cut, a list or an object by kind', () => {
    assert.equal(shown('ipip6'), '"ipip6"');
    assert.equal(shown(3.5), '3.5');
    assert.equal(shown('x'.repeat(100)), `"${'x'.repeat(59)}...`);
    assert.equal(shown([1, 2]), 'a list');
    assert.equal(shown({ a: 1 }), 'an object');
    assert.equal(shown(null), 'null');
  });

  test('a manifest over the size limit is refused before it is parsed; a page of problems is summed up', () => {
    assert.throws(() => parseManifest(`# ${'x'.repeat(MAX_MANIFEST_BYTES)}\n`, 'f.yaml'), /larger than 8388608 bytes/);
    const many = Array.from({ length: 50 }, () => 'kind: ConfigMap\n').join('---\n');
    assert.throws(
      () => parseManifest(many, 'f.yaml'),
      (e: Error) => {
        assert.equal(e.message.split('\n').length, 21, 'twenty problems and a count');
        assert.match(e.message, /and \d+ more problems$/);
        return true;
      },
    );
  });
});
