// Which nftables events can change what a reconcile would do: those about the agent's own
// table, which is its whole. On a node whose kube-proxy (nftables mode) or firewall
// rewrites its own tables all the time, a reconcile per event would read for nothing.
// Pure: a line of `nft -j monitor` in, a yes or no out.

import { NFT_FAMILY, NFT_TABLE } from '../../model/ownership.ts';

/**
 * Whether one line of `nft -j monitor` is about `table ip ipip-operator`: each line is one
 * object, `{"add"|"delete"|...: {"table"|"chain"|"set"|"element"|"rule"|...: {family,
 * table (name, for a table), ...}}}`; a flush of the table comes as a delete of each rule.
 * A line that is not such an object counts: reading the table once too often is the safe side.
 */
export function nftMonitorLineMatters(line: string): boolean {
  // Cheap first: a line about our table names it (kube-proxy's element updates are many and long).
  if (!line.includes(`"${NFT_TABLE}"`)) return line.trim() !== '' && !line.trimStart().startsWith('{');
  let event: unknown;
  try {
    event = JSON.parse(line);
  } catch {
    return true;
  }
  const verb = one(event);
  const object = verb === undefined ? undefined : one(verb[1]);
  if (object === undefined) return true;
  const [kind, body] = object;
  if (typeof body !== 'object' || body === null) return true;
  const { family, table, name } = body as Record<string, unknown>;
  return family === NFT_FAMILY && (kind === 'table' ? name : table) === NFT_TABLE;
}

function one(value: unknown): [string, unknown] | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
  const entries = Object.entries(value);
  return entries.length === 1 ? entries[0] : undefined;
}
