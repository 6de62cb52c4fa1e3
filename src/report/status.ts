// What the agents write, as pure functions of what they know. Two writers, never
// overwriting each other:
// - every node's agent owns its IpipNode (named after the node): one entry per tunnel it
//   is an endpoint of, with the underlay address it resolved and whether it is programmed;
// - the agent holding the Lease owns each IpipTunnel's aggregate status: observedGeneration,
//   readyEndpoints, totalEndpoints, readySummary and the conditions (Ready, Degraded),
//   computed from the IpipNodes of its endpoints.
// Status is an observation written only when it changes: each writer compares what it
// would write with what the object already says, so N agents do not wake each other.

import { createHash } from 'node:crypto';
import { defaultLinkName } from '../api/names.ts';
import type { Condition, IpipTunnel, IpipTunnelStatus, NodeTunnelStatus } from '../api/types.ts';
import { problemClass } from '../model/problem.ts';
import type { TunnelProblem, TunnelResolution } from '../model/problem.ts';

/** The field manager of the aggregate, whichever agent holds the Lease. */
export const AGGREGATE_FIELD_MANAGER = 'ipip-operator-aggregate';
const NODE_FIELD_MANAGER_PREFIX = 'ipip-operator-node/';
/** The API server allows field manager names of at most 128 characters. */
const MAX_FIELD_MANAGER = 128;

/** One field manager per node: the writer of its IpipNode. */
export function nodeFieldManager(nodeName: string): string {
  const plain = `${NODE_FIELD_MANAGER_PREFIX}${nodeName}`;
  if (plain.length <= MAX_FIELD_MANAGER) return plain;
  // Node names may be 253 characters: keep a prefix and a hash of the whole name.
  const hash = createHash('sha256').update(nodeName).digest('hex').slice(0, 16);
  return `${plain.slice(0, MAX_FIELD_MANAGER - 17)}-${hash}`;
}

export const PROGRAMMED = 'Programmed';

/**
 * This node's report on a tunnel it is an endpoint of. `problem` is the first problem
 * this reconcile found for the tunnel (resolve, conflict, caveat or kernel error).
 */
export function tunnelEntry(
  tunnel: IpipTunnel,
  resolution: Exclude<TunnelResolution, { outcome: 'absent' }>,
  problem: TunnelProblem | undefined,
): NodeTunnelStatus {
  const entry: NodeTunnelStatus = {
    name: tunnel.metadata.name,
    linkName:
      resolution.outcome === 'desired'
        ? resolution.desired.link.name
        : (tunnel.spec.linkName ?? defaultLinkName(tunnel.metadata.name)),
    ready: problem === undefined && resolution.outcome === 'desired',
    reason: PROGRAMMED,
    message: '',
    observedGeneration: tunnel.metadata.generation ?? 0,
  };
  // Published even while this node waits for its peer: the peer may be waiting for it.
  if (resolution.underlayAddress !== undefined) entry.underlayAddress = resolution.underlayAddress;
  if (resolution.outcome === 'desired' && problem === undefined) {
    const { link } = resolution.desired;
    const peers = link.tunnel.remote === undefined ? ` (a mesh of ${tunnel.spec.endpoints.length})` : '';
    entry.message = `link ${link.name} up, ${link.tunnel.local ?? 'any'} -> ${link.tunnel.remote ?? 'any'}${peers}`;
  } else {
    const why = problem ?? (resolution.outcome === 'desired' ? undefined : resolution);
    entry.reason = why?.reason ?? 'Unknown';
    entry.message = why?.message ?? '';
  }
  return entry;
}

const ENTRY_FIELDS = [
  'name',
  'underlayAddress',
  'linkName',
  'ready',
  'reason',
  'message',
  'observedGeneration',
] as const;

/** Equal in every field the agent writes (a missing field equals undefined). */
export function sameEntry(a: NodeTunnelStatus | undefined, b: NodeTunnelStatus | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return ENTRY_FIELDS.every((f) => (a[f] ?? undefined) === (b[f] ?? undefined));
}

/** The same entries, whatever their order. */
export function sameEntries(have: readonly NodeTunnelStatus[], want: readonly NodeTunnelStatus[]): boolean {
  if (have.length !== want.length) return false;
  const byName = new Map(have.map((e) => [e.name, e]));
  return want.every((w) => sameEntry(byName.get(w.name), w));
}

/** "ready/all" of a node's entries, for kubectl get ipipnodes. */
export function readySummaryOf(entries: readonly NodeTunnelStatus[]): string {
  return `${entries.filter((e) => e.ready === true).length}/${entries.length}`;
}

/** A node's report on a tunnel, from wherever the caller keeps the IpipNodes; undefined: none yet. */
export type NodeReportOf = (nodeName: string, tunnel: string) => NodeTunnelStatus | undefined;

/** metav1.Time: RFC 3339 in whole seconds. */
export function metaTime(date: Date): string {
  return date.toISOString().replace(/\.\d+Z$/, 'Z');
}

type AggregateStatus = Required<
  Pick<IpipTunnelStatus, 'observedGeneration' | 'readyEndpoints' | 'totalEndpoints' | 'readySummary' | 'conditions'>
>;

/** At most this many nodes are named in a condition message; the rest are counted. */
const NAMED_IN_MESSAGE = 3;

function listed(parts: string[]): string {
  const shown = parts.slice(0, NAMED_IN_MESSAGE).join('; ');
  return parts.length > NAMED_IN_MESSAGE ? `${shown}; and ${parts.length - NAMED_IN_MESSAGE} more` : shown;
}

/**
 * The aggregate the Lease holder writes. An endpoint counts as ready only when its agent
 * reported ready for the current generation, so a spec change makes the tunnel not Ready
 * until every endpoint has caught up. lastTransitionTime is kept unless the status changes.
 */
export function aggregateStatus(tunnel: IpipTunnel, reportOf: NodeReportOf, now: Date): AggregateStatus {
  const generation = tunnel.metadata.generation ?? 0;
  const nodes = (tunnel.spec.endpoints ?? []).map((e) => e.nodeName);
  const notReady: string[] = [];
  const errors: Array<{ node: string; reason: string; message: string }> = [];
  let ready = 0;
  for (const node of nodes) {
    const entry = reportOf(node, tunnel.metadata.name);
    if (entry === undefined) notReady.push(`${node}: no report from its agent yet`);
    else if (entry.observedGeneration !== generation)
      notReady.push(`${node}: has not seen generation ${generation} yet`);
    else if (entry.ready === true) ready += 1;
    else {
      notReady.push(`${node}: ${entry.reason ?? 'Unknown'}: ${entry.message ?? ''}`);
      if (problemClass(entry.reason ?? '') !== 'waiting')
        errors.push({ node, reason: entry.reason ?? 'Unknown', message: entry.message ?? '' });
    }
  }
  const total = nodes.length;
  const summary = `${ready}/${total}`;
  const readyCondition: Omit<Condition, 'lastTransitionTime'> =
    ready === total && total > 0
      ? {
          type: 'Ready',
          status: 'True',
          reason: 'AllEndpointsReady',
          message: `${summary} endpoints ready`,
          observedGeneration: generation,
        }
      : {
          type: 'Ready',
          status: 'False',
          reason: 'EndpointsNotReady',
          message: `${summary} endpoints ready; ${listed(notReady)}`,
          observedGeneration: generation,
        };
  const degraded: Omit<Condition, 'lastTransitionTime'> =
    errors.length === 0
      ? {
          type: 'Degraded',
          status: 'False',
          reason: 'NoEndpointErrors',
          message: 'no endpoint reports an error',
          observedGeneration: generation,
        }
      : {
          type: 'Degraded',
          status: 'True',
          reason: errors[0]!.reason,
          message: listed(errors.map((e) => `${e.node}: ${e.reason}: ${e.message}`)),
          observedGeneration: generation,
        };
  const previous = tunnel.status?.conditions ?? [];
  const conditions = [readyCondition, degraded].map((c): Condition => {
    const before = previous.find((p) => p.type === c.type);
    const lastTransitionTime =
      before !== undefined && before.status === c.status ? before.lastTransitionTime : metaTime(now);
    return { ...c, lastTransitionTime };
  });
  return {
    observedGeneration: generation,
    readyEndpoints: ready,
    totalEndpoints: total,
    readySummary: summary,
    conditions,
  };
}

const CONDITION_FIELDS = ['type', 'status', 'reason', 'message', 'observedGeneration', 'lastTransitionTime'] as const;

/** True when the object already says what aggregateStatus computed. */
export function sameAggregate(current: IpipTunnelStatus | undefined, wanted: AggregateStatus): boolean {
  if (current === undefined) return false;
  if (
    current.observedGeneration !== wanted.observedGeneration ||
    current.readyEndpoints !== wanted.readyEndpoints ||
    current.totalEndpoints !== wanted.totalEndpoints ||
    current.readySummary !== wanted.readySummary
  )
    return false;
  const have = current.conditions ?? [];
  if (have.length !== wanted.conditions.length) return false;
  return wanted.conditions.every((w) => {
    const h = have.find((c) => c.type === w.type);
    return h !== undefined && CONDITION_FIELDS.every((f) => h[f] === w[f]);
  });
}
