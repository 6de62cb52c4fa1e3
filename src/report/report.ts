// What one reconcile of a node tells the world, as a pure function of its outcome: the
// Events to record, this node's status entries to write (only those that changed), the
// metric samples, and the pass's result. The controller delivers it; nothing here does I/O.

import type { IpipTunnel, NodeTunnelStatus } from '../api/types.ts';
import type { ActionResult, ObjectKind, Verb } from '../model/action.ts';
import { OBJECT_KINDS, VERBS } from '../model/action.ts';
import type { ReconcileOutcome } from '../model/outcome.ts';
import { problemClass } from '../model/problem.ts';
import type { TunnelProblem } from '../model/problem.ts';
import type { TunnelEvent } from './events.ts';
import type { ReconcileResult, TunnelMetrics } from './metrics.ts';
import { sameEntries, sameEntry, tunnelEntry } from './status.ts';

export interface NodeReport {
  result: ReconcileResult;
  /** The successful kernel changes, for dataplane_changes_total. */
  changes: ActionResult[];
  driftCorrections: number;
  /** Every tunnel link of this node, for tunnel_up, tunnel_info and the kernel counters. */
  tunnels: TunnelMetrics[];
  events: TunnelEvent[];
  /**
   * This node's entries for its IpipNode, one per tunnel it is an endpoint of, when they
   * differ from what it has published; undefined: nothing to write.
   */
  nodeStatus: NodeTunnelStatus[] | undefined;
}

export type ChangeCounts = Record<ObjectKind, Record<Verb, number>>;

/** Successful changes by kind and verb, every pair present (0 when nothing changed). */
export function countChanges(results: readonly ActionResult[]): ChangeCounts {
  const counts = {} as ChangeCounts;
  for (const o of OBJECT_KINDS) counts[o] = Object.fromEntries(VERBS.map((v) => [v, 0])) as Record<Verb, number>;
  for (const r of results) if (r.error === undefined) counts[r.action.kind][r.action.verb] += 1;
  return counts;
}

/**
 * The report of one reconcile. `tunnels` are those the reconcile ran with, `corrections`
 * the drift corrections per tunnel (DriftTracker), `published` this node's entries as its
 * IpipNode says now by tunnel name (undefined: nothing is published, standalone).
 */
export function reportReconcile(
  nodeName: string,
  tunnels: readonly IpipTunnel[],
  outcome: ReconcileOutcome,
  corrections: ReadonlyMap<string, number>,
  published: ReadonlyMap<string, NodeTunnelStatus> | undefined,
): NodeReport {
  const firstProblem = new Map<string, TunnelProblem>();
  for (const p of outcome.problems) if (!firstProblem.has(p.tunnel)) firstProblem.set(p.tunnel, p);
  const changed = new Map<string, string[]>();
  for (const { action, error } of outcome.results) {
    if (error !== undefined) continue;
    changed.set(action.tunnel, [
      ...(changed.get(action.tunnel) ?? []),
      `${action.verb} ${action.kind} ${action.detail}`,
    ]);
  }
  const linksByName = new Map(outcome.observed.links.map((l) => [l.name, l]));
  const nft = outcome.observed.nft;
  const rulesByTunnel = new Map(nft?.available === true ? nft.rules.map((r) => [r.tunnel, r]) : []);
  const resolutions = new Map(outcome.resolutions.map((r) => [r.tunnel, r]));
  const report: NodeReport = {
    result: outcome.results.some((r) => r.error !== undefined)
      ? 'error'
      : outcome.problems.length > 0
        ? 'requeue'
        : 'success',
    changes: outcome.results.filter((r) => r.error === undefined),
    driftCorrections: [...corrections.values()].reduce((a, b) => a + b, 0),
    tunnels: [],
    events: [],
    nodeStatus: undefined,
  };
  const entries: NodeTunnelStatus[] = [];

  for (const tunnel of tunnels) {
    const name = tunnel.metadata.name;
    const resolution = resolutions.get(name);
    if (resolution === undefined) continue;
    const mine = published?.get(name);
    const changes = changed.get(name);
    if (changes !== undefined) {
      const reason =
        resolution.outcome === 'absent' ? 'EndpointRemoved' : corrections.has(name) ? 'DriftCorrected' : 'Programmed';
      report.events.push({ tunnel, type: 'Normal', reason, message: `node ${nodeName}: ${changes.join('; ')}` });
    }
    // No longer an endpoint: its kernel objects went in this pass; its entry is left out.
    if (resolution.outcome === 'absent') continue;
    const wanted = tunnelEntry(tunnel, resolution, firstProblem.get(name));
    entries.push(wanted);
    if (resolution.outcome === 'desired') {
      const { link } = resolution.desired;
      const stats = linksByName.get(link.name)?.stats;
      const rules = rulesByTunnel.get(name);
      // A rule the tunnel wants shows from 0 before its first write, so its series exists from the start.
      const dropped = resolution.desired.rules?.peerFilter === undefined ? undefined : (rules?.dropped?.packets ?? 0);
      const masqueraded =
        resolution.desired.rules?.masquerade === undefined ? undefined : (rules?.masqueraded?.packets ?? 0);
      report.tunnels.push({
        tunnel: name,
        link: link.name,
        mode: link.tunnel.mode,
        local: link.tunnel.local ?? '',
        remote: link.tunnel.remote ?? '',
        up: wanted.ready === true,
        ...(stats === undefined ? {} : { stats }),
        ...(dropped === undefined ? {} : { foreignIpipDropped: dropped }),
        ...(masqueraded === undefined ? {} : { masqueraded }),
      });
    }
    if (sameEntry(mine, wanted)) continue;
    // A Warning is for what needs a person: waiting for a peer to publish its address is
    // normal convergence, shown in the status alone.
    const waiting = problemClass(wanted.reason ?? '') === 'waiting';
    if (wanted.ready !== true && !waiting && (mine?.reason !== wanted.reason || mine?.message !== wanted.message)) {
      report.events.push({
        tunnel,
        type: 'Warning',
        reason: wanted.reason ?? 'Unknown',
        message: `node ${nodeName}: ${wanted.message ?? ''}`,
      });
    }
  }
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  if (published !== undefined && !sameEntries([...published.values()], entries)) report.nodeStatus = entries;
  return report;
}
