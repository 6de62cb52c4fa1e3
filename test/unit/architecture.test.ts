// The invariants of docs/architecture.md that a machine can check, read from the sources:
// which folder of src/ may import which (one way, no cycles), and where kernel and API I/O
// may happen.

import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, test } from 'node:test';
import { REPO } from '../harness/repo.ts';

const SRC = join(REPO, 'src');

/**
 * What each folder may import, the map of docs/architecture.md. Lower layers never import
 * higher ones; `cli` wires everything.
 */
const ALLOWED: Readonly<Record<string, readonly string[]>> = {
  net: [],
  api: ['net'],
  model: ['api', 'net'],
  resolve: ['api', 'model', 'net'],
  plan: ['model', 'net'],
  dataplane: ['model', 'net'],
  kube: ['api'],
  report: ['api', 'model', 'dataplane', 'kube'],
  controller: ['api', 'model', 'net', 'resolve', 'plan', 'dataplane', 'kube', 'report'],
  cli: ['api', 'model', 'resolve', 'plan', 'dataplane', 'kube', 'report', 'controller'],
};

interface Import {
  file: string;
  folder: string;
  target: string;
  typeOnly: boolean;
}

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return sources(path);
    return e.name.endsWith('.ts') ? [path] : [];
  });
}

function importsOf(file: string): Import[] {
  const text = readFileSync(file, 'utf8');
  const folder = relative(SRC, file).split('/')[0]!;
  const found: Import[] = [];
  for (const m of text.matchAll(/^import\s+(type\s+)?[^'"]*?from\s+'([^']+)'/gm)) {
    found.push({ file: relative(REPO, file), folder, target: m[2]!, typeOnly: m[1] !== undefined });
  }
  for (const m of text.matchAll(/\bimport\(\s*'([^']+)'\s*\)/g))
    found.push({ file: relative(REPO, file), folder, target: m[1]!, typeOnly: false });
  // A built-in taken as CommonJS (node:http, whose ES module face loads undici) is an import too.
  for (const m of text.matchAll(/\bprocess\.getBuiltinModule\(\s*'([^']+)'\s*\)/g))
    found.push({ file: relative(REPO, file), folder, target: m[1]!, typeOnly: false });
  return found;
}

const ALL = sources(SRC).flatMap(importsOf);

/** The src folder an import points into, or undefined for a package or node: module. */
function targetFolder(i: Import): string | undefined {
  if (!i.target.startsWith('.')) return undefined;
  return relative(SRC, join(REPO, i.file, '..', i.target)).split('/')[0];
}

describe('architecture', () => {
  test('every folder of src/ is on the map', () => {
    const folders = readdirSync(SRC, { withFileTypes: true })
      .filter((e) => e.isDirectory())
      .map((e) => e.name)
      .sort();
    assert.deepEqual(folders, Object.keys(ALLOWED).sort());
  });

  test('each folder imports only the folders below it: data flows one way, no folder imports one that imports it back', () => {
    const wrong = ALL.filter((i) => {
      const to = targetFolder(i);
      return to !== undefined && to !== i.folder && !ALLOWED[i.folder]!.includes(to);
    }).map((i) => `${i.file} imports ${i.target}`);
    assert.deepEqual(wrong, []);
    // The map itself has no cycle: a topological order exists.
    const placed: string[] = [];
    while (placed.length < Object.keys(ALLOWED).length) {
      const next = Object.keys(ALLOWED).find(
        (f) => !placed.includes(f) && ALLOWED[f]!.every((d) => placed.includes(d)),
      );
      assert.ok(
        next !== undefined,
        `a cycle among ${Object.keys(ALLOWED)
          .filter((f) => !placed.includes(f))
          .join(', ')}`,
      );
      placed.push(next);
    }
  });

  test('kernel I/O only in the drivers: processes start in src/dataplane/process.ts alone, which only the drivers import', () => {
    const users = ALL.filter((i) => i.target === '../process.ts' && !i.typeOnly)
      .map((i) => i.file)
      .sort();
    assert.deepEqual(users, ['src/dataplane/ip/driver.ts', 'src/dataplane/nft/driver.ts']);
    assert.deepEqual(
      ALL.filter((i) => /^(node:)?(child_process|cluster|worker_threads)$|^execa$/.test(i.target) && !i.typeOnly).map(
        (i) => i.file,
      ),
      ['src/dataplane/process.ts'],
    );
  });

  test('API I/O only in src/kube/client.ts: HTTP requests are made nowhere else, and no Kubernetes client library is loaded', () => {
    // report/http.ts serves /metrics (createServer); every request goes out through kube/client.ts.
    const http = ALL.filter((i) => /^node:(https?|http2|net|tls)$/.test(i.target) && !i.typeOnly).map(
      (i) => `${i.file} ${i.target}`,
    );
    assert.deepEqual(http.sort(), [
      'src/kube/client.ts node:http',
      'src/kube/client.ts node:https',
      'src/report/http.ts node:http',
    ]);
    const serving = readFileSync(join(REPO, 'src/report/http.ts'), 'utf8');
    assert.doesNotMatch(serving, /\b(request|get|Agent)\b[^\n]*from 'node:http'/);
    assert.deepEqual(
      ALL.filter((i) => /kubernetes|undici/.test(i.target)).map((i) => i.file),
      [],
    );
    const sourceText = sources(SRC)
      .map((f) => readFileSync(f, 'utf8'))
      .join('\n');
    assert.doesNotMatch(sourceText, /\bfetch\(/, 'fetch() is an HTTP client too');
  });
});
