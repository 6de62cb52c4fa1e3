// Standalone manifests: a multi-document YAML file of IpipTunnel objects, held to the same
// rules the CRD enforces. Pure: the caller reads the file.

import { parseAllDocuments } from 'yaml';
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
  parseAllDocuments(text).forEach((doc, i) => {
    const where = `${source}: document ${i + 1}`;
    if (doc.errors.length > 0) {
      problems.push(`${where}: not valid YAML: ${doc.errors[0]!.message}`);
      return;
    }
    let obj: unknown;
    try {
      // The yaml library's guard against alias bombs ("billion laughs") throws here.
      obj = doc.toJS();
    } catch (error) {
      problems.push(`${where}: not usable YAML: ${(error as Error).message}`);
      return;
    }
    if (obj === null || obj === undefined) return; // an empty document, e.g. after a trailing ---
    const errors = validateTunnel(obj);
    const name = (obj as { metadata?: { name?: unknown } }).metadata?.name;
    const label = typeof name === 'string' ? `${where} (${name})` : where;
    if (errors.length > 0) {
      for (const e of errors) problems.push(`${label}: ${e.field === '' ? '' : `${e.field}: `}${e.message}`);
      return;
    }
    const { status: _ignored, ...tunnel } = obj as IpipTunnel;
    const first = names.get(tunnel.metadata.name);
    if (first !== undefined) {
      problems.push(`${label}: metadata.name: "${tunnel.metadata.name}" is already document ${first}`);
      return;
    }
    names.set(tunnel.metadata.name, i + 1);
    tunnels.push(tunnel);
  });
  if (problems.length > MAX_PROBLEMS_SHOWN) {
    const more = problems.length - MAX_PROBLEMS_SHOWN;
    problems.splice(MAX_PROBLEMS_SHOWN, more, `${source}: and ${more} more problems`);
  }
  if (problems.length > 0) throw new InputError(problems.join('\n'));
  return tunnels;
}
