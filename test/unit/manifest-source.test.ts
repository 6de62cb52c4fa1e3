// The standalone agent's tunnel source (controller/standalone.ts manifestSource): the file
// is read at every pass, and bytes the same as the last good ones are neither decoded nor
// parsed; a bad file keeps the last good tunnels in force and is said to be bad each time.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { stringify } from 'yaml';
import { ManifestParser } from '../../src/api/manifest.ts';
import type { IpipTunnel } from '../../src/api/types.ts';
import { manifestSource } from '../../src/controller/standalone.ts';
import { createLogger } from '../../src/report/log.ts';
import { manyTunnels } from '../../bench/tunnels.ts';

/** A parser that counts the texts it is given. */
class CountingParser extends ManifestParser {
  texts = 0;
  override parse(text: string, source: string): IpipTunnel[] {
    this.texts += 1;
    return super.parse(text, source);
  }
}

const text = (tunnels: readonly IpipTunnel[]) => tunnels.map((t) => stringify(t)).join('---\n');

describe('manifestSource: the file at every pass, parsed only when its bytes changed', () => {
  const dir = mkdtempSync(join(tmpdir(), 'manifest-source-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('the same bytes are not parsed again; other bytes are; a bad file keeps the last good tunnels and is logged each pass', async () => {
    const path = join(dir, 'tunnels.yaml');
    const lines: string[] = [];
    const log = createLogger({ format: 'json', level: 'info', sink: (t) => lines.push(...t.trim().split('\n')) });
    const parser = new CountingParser();
    const source = manifestSource(path, log, parser);
    const ten = manyTunnels(10);
    writeFileSync(path, text(ten));

    const first = await source.current();
    assert.equal(parser.texts, 1);
    assert.deepEqual(
      first?.tunnels.map((t) => t.metadata.name),
      ten.map((t) => t.metadata.name),
    );
    // Unchanged: read again, not parsed; the very same objects (the loop compares them).
    const again = await source.current();
    assert.equal(parser.texts, 1);
    assert.equal(again?.tunnels, first?.tunnels);

    // Changed: parsed.
    const eleven = manyTunnels(11);
    writeFileSync(path, text(eleven));
    const changed = await source.current();
    assert.equal(parser.texts, 2);
    assert.equal(changed?.tunnels.length, 11);

    // Bad: parsed and refused at each pass, the last good tunnels kept.
    writeFileSync(path, 'spec: [unclosed');
    for (const pass of [1, 2]) {
      const kept = await source.current();
      assert.equal(kept?.tunnels, changed?.tunnels, `pass ${pass} on a bad file keeps the last good tunnels`);
      await new Promise((done) => setImmediate(done));
      assert.equal(lines.filter((l) => l.includes('manifest rejected')).length, pass);
    }
    assert.equal(parser.texts, 4);

    // The good bytes back: the same as the last good ones, so not parsed again.
    writeFileSync(path, text(eleven));
    const back = await source.current();
    assert.equal(parser.texts, 4);
    assert.equal(back?.tunnels, changed?.tunnels);
  });
});
