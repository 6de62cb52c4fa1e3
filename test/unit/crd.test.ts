// The CRDs of crds/ as `kubectl explain` and `kubectl get` show them: every field of the
// schema, status included, has a description, and every printer column has one and
// points at a field the schema has. (test/cluster/crd.test.ts reads them back from a
// real API server; test/cluster/helm.test.ts checks that the chart carries byte copies.)

import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { parse } from 'yaml';
import { REPO } from '../harness/repo.ts';

interface Schema {
  type?: string;
  description?: string;
  properties?: Record<string, Schema>;
  items?: Schema;
  additionalProperties?: Schema | boolean;
}
interface Column {
  name: string;
  type: string;
  jsonPath: string;
  description?: string;
  priority?: number;
}
interface Crd {
  metadata: { name: string };
  spec: { versions: Array<{ name: string; additionalPrinterColumns?: Column[]; schema: { openAPIV3Schema: Schema } }> };
}

const FILES = readdirSync(join(REPO, 'crds'))
  .filter((f) => f.endsWith('.yaml'))
  .sort();

function load(file: string): Crd {
  return parse(readFileSync(join(REPO, 'crds', file), 'utf8')) as Crd;
}

/**
 * The fields without a description: each property, and the items of a list of objects, as
 * kubectl explain walks them. The API server allows nothing in the root's metadata but
 * name and generateName (not even a description: it publishes ObjectMeta's own).
 */
function undescribed(schema: Schema, path: string, isMetadata = false): string[] {
  const missing = (schema.description ?? '').trim() === '' && !isMetadata ? [path] : [];
  const below = [
    ...Object.entries(schema.properties ?? {}).map(([name, s]) =>
      undescribed(s, `${path}.${name}`, !path.includes('.') && name === 'metadata'),
    ),
    // A list's items are described by the list field itself unless they are objects.
    ...(schema.items?.properties === undefined ? [] : [undescribed(schema.items, `${path}[]`)]),
    ...(typeof schema.additionalProperties === 'object' && schema.additionalProperties.properties !== undefined
      ? [undescribed(schema.additionalProperties, `${path}{}`)]
      : []),
  ];
  return [...missing, ...below.flat()];
}

/** The schema a printer column's JSON path leads to (a filter like [?(@.type=="Ready")] picks list items), or undefined. */
function resolve(root: Schema, jsonPath: string): Schema | undefined {
  const steps = jsonPath
    .replace(/\[\?\([^)]*\)\]/g, '[]')
    .split(/\.|(?=\[\])/)
    .filter((s) => s !== '');
  let at: Schema | undefined = root;
  for (const step of steps) {
    if (at === undefined) return undefined;
    // Every object's metadata is ObjectMeta, whatever the CRD's schema spells out of it.
    if (at === root.properties?.metadata && step === 'creationTimestamp') return { type: 'string' };
    at = step === '[]' ? at.items : at.properties?.[step];
  }
  return at;
}

describe('the CRDs for kubectl explain and kubectl get', () => {
  test('crds/ holds IpipTunnel and IpipNode', () => {
    assert.deepEqual(FILES, ['ipipnodes.yaml', 'ipiptunnels.yaml']);
  });

  for (const file of FILES) {
    test(`${file}: every field of the schema, status included, has a description`, () => {
      for (const version of load(file).spec.versions) {
        const root = version.schema.openAPIV3Schema;
        assert.deepEqual(undescribed(root, version.name), [], `${file}: fields without a description`);
      }
    });

    test(`${file}: every printer column has a description and a JSON path to a field of the schema, of its type`, () => {
      for (const version of load(file).spec.versions) {
        for (const c of version.additionalPrinterColumns ?? []) {
          assert.ok((c.description ?? '').trim() !== '', `${file}: column ${c.name} has a description`);
          const field = resolve(version.schema.openAPIV3Schema, c.jsonPath);
          assert.ok(field !== undefined, `${file}: column ${c.name}: ${c.jsonPath} is a field of the schema`);
          const expected = c.type === 'date' ? 'string' : c.type === 'number' ? 'number' : c.type;
          assert.equal(field.type, expected, `${file}: column ${c.name}: ${c.jsonPath} is a ${c.type}`);
        }
      }
    });
  }

  test('kubectl get ipt shows mode, ready and age; -o wide adds the link, Degraded, its reason and the message', () => {
    const [version] = load('ipiptunnels.yaml').spec.versions;
    const columns = version!.additionalPrinterColumns ?? [];
    assert.deepEqual(
      columns.filter((c) => (c.priority ?? 0) === 0).map((c) => c.name),
      ['Mode', 'Ready', 'Age'],
    );
    assert.deepEqual(
      columns.map((c) => [c.name, c.jsonPath, c.priority ?? 0]),
      [
        ['Mode', '.spec.mode', 0],
        ['Link', '.spec.linkName', 1],
        ['Ready', '.status.readySummary', 0],
        ['Degraded', '.status.conditions[?(@.type=="Degraded")].status', 1],
        ['Reason', '.status.conditions[?(@.type=="Degraded")].reason', 1],
        ['Age', '.metadata.creationTimestamp', 0],
        ['Message', '.status.conditions[?(@.type=="Ready")].message', 1],
      ],
    );
  });

  test('the checks find a field without a description and a column that points nowhere', () => {
    const schema: Schema = {
      type: 'object',
      description: 'x',
      properties: {
        spec: {
          type: 'object',
          description: 'x',
          properties: {
            a: { type: 'string' },
            list: {
              type: 'array',
              description: 'x',
              items: { type: 'object', properties: { b: { type: 'integer' } } },
            },
          },
        },
      },
    };
    assert.deepEqual(undescribed(schema, 'v1'), ['v1.spec.a', 'v1.spec.list[]', 'v1.spec.list[].b']);
    assert.equal(resolve(schema, '.spec.list[?(@.b==1)].b')?.type, 'integer');
    assert.equal(resolve(schema, '.spec.lnk'), undefined);
    assert.equal(resolve(schema, '.status.readySummary'), undefined);
  });
});
