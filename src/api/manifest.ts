// Standalone manifests: a multi-document YAML file of IpipTunnel objects, held to the same
// rules the CRD enforces. Pure: the caller reads the file.

import { parseAllDocuments } from 'yaml';
import type { IpipTunnel } from './types.ts';
import { validateTunnel } from './validate.ts';

/** Input a user can fix; the CLI exits 2 with its message. */
export class InputError extends Error {
  override name = 'InputError';
}

export function parseManifest(text: string, source: string): IpipTunnel[] {
  const problems: string[] = [];
  const tunnels: IpipTunnel[] = [];
  const names = new Map<string, number>();
  parseAllDocuments(text).forEach((doc, i) => {
    const where = `${source}: document ${i + 1}`;
    if (doc.errors.length > 0) {
      problems.push(`${where}: not valid YAML: ${doc.errors[0]!.message}`);
      return;
    }
    const obj: unknown = doc.toJS();
    if (obj === null || obj === undefined) return; // an empty document, e.g. after a trailing ---
    const errors = validateTunnel(obj);
    const name = (obj as { metadata?: { name?: unknown } }).metadata?.name;
    const label = typeof name === 'string' ? `${where} (${name})` : where;
    if (errors.length > 0) {
      for (const e of errors) problems.push(`${label}: ${e.field === '' ? '' : `${e.field}: `}${e.message}`);
      return;
    }
    const tunnel = obj as IpipTunnel;
    const first = names.get(tunnel.metadata.name);
    if (first !== undefined) {
      problems.push(`${label}: metadata.name: "${tunnel.metadata.name}" is already document ${first}`);
      return;
    }
    names.set(tunnel.metadata.name, i + 1);
    tunnels.push(tunnel);
  });
  if (problems.length > 0) throw new InputError(problems.join('\n'));
  return tunnels;
}
