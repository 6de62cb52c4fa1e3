// Standalone manifests: a multi-document YAML file of IpipTunnel objects, held to the same
// rules the CRD enforces. Pure: the caller reads the file.

import { loadAll, YAMLException } from 'js-yaml';
import type { IpipTunnel } from './types.ts';
import { validateTunnel } from './validate.ts';

/** Input a user can fix; the CLI exits 2 with its message. */
export class InputError extends Error {
  override name = 'InputError';
}

/** The largest manifest the agent reads, checked before parsing: some 20,000 tunnels. */
export const MAX_MANIFEST_BYTES = 8 * 1024 * 1024;
/** A manifest wrong everywhere gets a message a person can read: the first problems, then a count. */
const MAX_PROBLEMS_SHOWN = 20;

/**
 * The tunnels of a manifest, each validated as the CRD would (unknown fields included).
 * A standalone manifest's `status` is ignored: without an API server nothing publishes
 * one. Throws InputError naming the document and field of every problem.
 */
export function parseManifest(text: string, source: string): IpipTunnel[] {
  if (Buffer.byteLength(text) > MAX_MANIFEST_BYTES) {
    throw new InputError(`${source}: larger than ${MAX_MANIFEST_BYTES} bytes, the most a manifest may be`);
  }
  const problems: string[] = [];
  const tunnels: IpipTunnel[] = [];
  const names = new Map<string, number>();
  let documents = 0;
  let line = 1;
  for (const piece of manifestPieces(text)) {
    const pieceLine = line;
    line += lineCount(piece);
    const parsed = parsePiece(piece);
    if (!Array.isArray(parsed)) {
      documents += 1;
      const at = `line ${pieceLine + parsed.line}, column ${parsed.column}`;
      problems.push(`${source}: document ${documents}: not valid YAML: ${parsed.reason} (${at})`);
      continue;
    }
    for (const obj of parsed) {
      documents += 1;
      const where = `${source}: document ${documents}`;
      const tunnel = documentTunnel(obj, where, problems);
      if (tunnel === undefined) continue;
      const first = names.get(tunnel.metadata.name);
      if (first !== undefined) {
        problems.push(
          `${where} (${tunnel.metadata.name}): metadata.name: "${tunnel.metadata.name}" is already document ${first}`,
        );
        continue;
      }
      names.set(tunnel.metadata.name, documents);
      tunnels.push(tunnel);
    }
  }
  if (problems.length > MAX_PROBLEMS_SHOWN) {
    const more = problems.length - MAX_PROBLEMS_SHOWN;
    problems.splice(MAX_PROBLEMS_SHOWN, more, `${source}: and ${more} more problems`);
  }
  if (problems.length > 0) throw new InputError(problems.join('\n'));
  return tunnels;
}

/**
 * The YAML parser's guards against input built to exhaust memory or the stack: a "billion
 * laughs" of aliases (each alias is one shared object, but whatever walks the tree walks
 * every reference) and deep nesting. A tunnel needs neither.
 */
const YAML_LIMITS = { maxAliases: 100, maxDepth: 100 } as const;

/** Where and why a piece is not YAML; line and column from 0 within the piece. */
interface YamlError {
  reason: string;
  line: number;
  column: number;
}

/**
 * The documents of one piece of a manifest (YAML 1.2, the core schema: what kubectl reads),
 * or why it is not YAML. js-yaml rather than the yaml library: for a manifest of 1,000
 * tunnels the yaml library allocated about 230 MiB (its concrete syntax tree) and took
 * 200-300 ms; js-yaml builds the objects straight from its parser's events in about a
 * tenth of both (bench/RESULTS.md).
 */
function parsePiece(piece: string): unknown[] | YamlError {
  try {
    return loadAll(piece, YAML_LIMITS);
  } catch (error) {
    if (!(error instanceof YAMLException)) throw error;
    return { reason: error.reason, line: error.mark?.line ?? 0, column: (error.mark?.column ?? 0) + 1 };
  }
}

/**
 * The text in pieces parsed one by one: cut at its document markers, or whole when it has
 * a directive (`%YAML`, `%TAG`: a directive belongs to the document after its marker).
 */
function manifestPieces(text: string): string[] {
  return hasDirective(text) ? [text] : splitDocuments(text);
}

const hasDirective = (text: string) => /^%/m.test(text);

function lineCount(piece: string): number {
  let n = 0;
  for (let i = piece.indexOf('\n'); i !== -1; i = piece.indexOf('\n', i + 1)) n += 1;
  return n;
}

/** One document's tunnel, validated; undefined for an empty document or one with problems (pushed to `problems`). */
function documentTunnel(obj: unknown, where: string, problems: string[]): IpipTunnel | undefined {
  if (obj === null || obj === undefined) return undefined; // an empty document, e.g. after a trailing ---
  const errors = validateTunnel(obj);
  const name = (obj as { metadata?: { name?: unknown } }).metadata?.name;
  const label = typeof name === 'string' ? `${where} (${name})` : where;
  if (errors.length > 0) {
    for (const e of errors) problems.push(`${label}: ${e.field === '' ? '' : `${e.field}: `}${e.message}`);
    return undefined;
  }
  const { status: _ignored, ...tunnel } = obj as IpipTunnel;
  return tunnel;
}

/**
 * A document marker: `---` at the start of a line, then a space, a tab or the line's end.
 * YAML forbids such a line inside any content (a block scalar, a quoted string, a flow
 * collection), so it always starts a document.
 */
const DOCUMENT_MARKER = /^---(?=[ \t\r\n]|$)/gm;

/**
 * The text cut before each document marker: each piece is a YAML stream of its own that
 * holds the same documents as in the whole (without directives, which the caller excludes).
 */
export function splitDocuments(text: string): string[] {
  const starts = [0];
  for (const m of text.matchAll(DOCUMENT_MARKER)) if (m.index > 0) starts.push(m.index);
  return starts.map((start, i) => text.slice(start, starts[i + 1]));
}

/**
 * parseManifest with a memory of the last manifest it parsed. A standalone agent reads its
 * manifest at every pass, and at 1,000 tunnels parsing and validating all of it was most of
 * a pass that found nothing to do. A text equal to the last is not parsed again; in a
 * changed text only the pieces between document markers that changed are parsed and
 * validated. Any problem, and any text with a directive (`%YAML`, `%TAG`: a directive
 * belongs to the document after it), goes through parseManifest whole, so a refusal names
 * the same document and line as ever.
 */
export class ManifestParser {
  private lastText: string | undefined;
  private lastTunnels: IpipTunnel[] = [];
  /** Each piece of the last good text, with its tunnels. */
  private pieces = new Map<string, readonly IpipTunnel[]>();
  /** How many pieces the last call parsed (0: the text was the same as the last). */
  parsedPieces = 0;

  parse(text: string, source: string): IpipTunnel[] {
    this.parsedPieces = 0;
    if (text === this.lastText) return this.lastTunnels;
    const tunnels = this.byPiece(text) ?? this.whole(text, source);
    this.lastText = text;
    this.lastTunnels = tunnels;
    return tunnels;
  }

  /** The tunnels, parsing only new pieces; undefined when anything needs parseManifest's messages. */
  private byPiece(text: string): IpipTunnel[] | undefined {
    if (Buffer.byteLength(text) > MAX_MANIFEST_BYTES || hasDirective(text)) return undefined;
    const pieces = new Map<string, readonly IpipTunnel[]>();
    const tunnels: IpipTunnel[] = [];
    const names = new Set<string>();
    for (const cut of splitDocuments(text)) {
      // A bare marker line starts the same document as no marker: a tunnel moved to the top keeps its parse.
      const piece = cut.startsWith('---\n') ? cut.slice(4) : cut;
      let found = pieces.get(piece) ?? this.pieces.get(piece);
      if (found === undefined) {
        this.parsedPieces += 1;
        const docs = parsePiece(piece);
        if (!Array.isArray(docs)) return undefined;
        const problems: string[] = [];
        const parsed: IpipTunnel[] = [];
        for (const obj of docs) {
          const tunnel = documentTunnel(obj, '', problems);
          if (tunnel !== undefined) parsed.push(tunnel);
        }
        if (problems.length > 0) return undefined;
        found = parsed;
      }
      pieces.set(piece, found);
      for (const tunnel of found) {
        if (names.has(tunnel.metadata.name)) return undefined;
        names.add(tunnel.metadata.name);
        tunnels.push(tunnel);
      }
    }
    this.pieces = pieces;
    return tunnels;
  }

  private whole(text: string, source: string): IpipTunnel[] {
    this.parsedPieces = manifestPieces(text).length;
    return parseManifest(text, source);
  }
}
