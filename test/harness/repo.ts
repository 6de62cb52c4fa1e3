// The checkout the harness runs from, and the example tunnel every suite starts with.

import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import type { IpipTunnel } from '../../src/api/types.ts';

/** The root of the checkout (guests see it at the same path). */
export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/** examples/tunnel.yaml: the two-host lab, node-a 192.168.40.2 <-> node-b 192.168.40.3. */
export const EXAMPLE = join(REPO, 'examples/tunnel.yaml');

/** A fresh copy of the example tunnel, changed by `mutate`. */
export function exampleTunnel(mutate: (t: IpipTunnel) => void = () => {}): IpipTunnel {
  const t = parseAllDocuments(readFileSync(EXAMPLE, 'utf8'))[0]!.toJS() as IpipTunnel;
  mutate(t);
  return t;
}

/** examples/mesh.yaml: node-a, node-b and node-c in a full mesh, 10.30.0.0/24 behind node-c. */
export const MESH_EXAMPLE = join(REPO, 'examples/mesh.yaml');

/** A fresh copy of the mesh example, changed by `mutate`. */
export function meshExample(mutate: (t: IpipTunnel) => void = () => {}): IpipTunnel {
  const t = parseAllDocuments(readFileSync(MESH_EXAMPLE, 'utf8'))[0]!.toJS() as IpipTunnel;
  mutate(t);
  return t;
}
