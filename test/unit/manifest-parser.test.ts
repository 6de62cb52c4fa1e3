import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { stringify } from 'yaml';
import { ManifestParser, parseManifest, splitDocuments } from '../../src/api/manifest.ts';
import type { IpipTunnel } from '../../src/api/types.ts';
import { manyTunnels } from '../../bench/tunnels.ts';

const text = (tunnels: readonly IpipTunnel[]) => tunnels.map((t) => stringify(t)).join('---\n');

/** What parseManifest says of a text: its tunnels, or its refusal. */
function whole(source: string): IpipTunnel[] | string {
  try {
    return parseManifest(source, 'f.yaml');
  } catch (error) {
    return (error as Error).message;
  }
}

function pieceByPiece(parser: ManifestParser, source: string): IpipTunnel[] | string {
  try {
    return parser.parse(source, 'f.yaml');
  } catch (error) {
    return (error as Error).message;
  }
}

describe('ManifestParser: a manifest read at every pass is parsed only where it changed', () => {
  test('the same text is not parsed again, and gives the same tunnels', () => {
    const parser = new ManifestParser();
    const source = text(manyTunnels(100));
    const first = parser.parse(source, 'f.yaml');
    assert.equal(parser.parsedPieces, 100);
    assert.equal(parser.parse(source, 'f.yaml'), first);
    assert.equal(parser.parsedPieces, 0);
  });

  test('one tunnel edited among 1,000: one document parsed, and the result is what parseManifest gives', () => {
    const parser = new ManifestParser();
    const tunnels = manyTunnels(1000);
    parser.parse(text(tunnels), 'f.yaml');
    const edited = tunnels.map((t, i) => (i === 500 ? { ...t, spec: { ...t.spec, ttl: 32 } } : t));
    const result = parser.parse(text(edited), 'f.yaml');
    assert.equal(parser.parsedPieces, 1);
    assert.deepEqual(result, parseManifest(text(edited), 'f.yaml'));
    assert.equal(result[500]!.spec.ttl, 32);
  });

  test('tunnels added, removed and moved: the same tunnels in the same order as parseManifest', () => {
    const parser = new ManifestParser();
    const tunnels = manyTunnels(20);
    parser.parse(text(tunnels), 'f.yaml');
    const changed = [...tunnels.slice(10), ...tunnels.slice(0, 5), ...manyTunnels(25).slice(20)];
    const result = parser.parse(text(changed), 'f.yaml');
    assert.equal(parser.parsedPieces, 5);
    assert.deepEqual(result, parseManifest(text(changed), 'f.yaml'));
  });

  test('markers, comments, empty documents and document ends give what parseManifest gives', () => {
    const [a, b] = manyTunnels(2).map((t) => stringify(t));
    const sources = [
      `---\n${a}---\n${b}`,
      `# tunnels\n---\n${a}--- # the second\n${b}---\n`,
      `${a}...\n---\n${b}`,
      `${a}---\n\n---\n${b}---\n---\n`,
      `${a}---\nlist: |\n  text\n  ---not-a-marker\n`,
      '',
      '# nothing but a comment\n',
    ];
    for (const source of sources) {
      assert.deepEqual(pieceByPiece(new ManifestParser(), source), whole(source), source);
    }
  });

  test("a refusal is parseManifest's, naming the same document and line, and the last good text stays known", () => {
    const parser = new ManifestParser();
    const tunnels = manyTunnels(3);
    const good = text(tunnels);
    parser.parse(good, 'f.yaml');
    const bad = [
      good.replace('ttl', 'tll').replace('linkName: bench1', 'linkName: bench1\n  tll: 3'),
      `${good}---\nspec: [unclosed\n`,
      `${good}---\n${stringify(tunnels[1])}`,
      `%YAML 1.2\n---\n${stringify(tunnels[0])}`,
    ];
    for (const source of bad) assert.deepEqual(pieceByPiece(parser, source), whole(source), source);
    assert.match(
      pieceByPiece(parser, bad[2]!) as string,
      /document 4 \(t1\): metadata.name: "t1" is already document 2/,
    );
    assert.match(pieceByPiece(parser, bad[1]!) as string, /document 4: not valid YAML/);
    parser.parse(good, 'f.yaml');
    assert.equal(parser.parsedPieces, 0);
  });

  test('splitDocuments cuts before every marker line and nowhere else', () => {
    assert.deepEqual(splitDocuments('a: 1\n---\nb: 2\n--- x\nc: 3\n----\n'), [
      'a: 1\n',
      '---\nb: 2\n',
      '--- x\nc: 3\n----\n',
    ]);
    assert.deepEqual(splitDocuments('---\na: 1\n'), ['---\na: 1\n']);
  });
});
