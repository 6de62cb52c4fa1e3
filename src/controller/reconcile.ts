// One reconcile of this node: observe -> resolve -> plan -> apply. Level-based: it depends
// on the current tunnels and kernel only, never on what event woke it.

import type { IpipTunnel, NodeTunnelStatus } from '../api/types.ts';
import type { Dataplane } from '../dataplane/dataplane.ts';
import { renderPlan } from '../dataplane/render.ts';
import type { KernelInterest } from '../model/kernel.ts';
import type { ReconcileOutcome } from '../model/outcome.ts';
import { linkOwner } from '../model/ownership.ts';
import { problemsOf } from '../model/problem.ts';
import type { TunnelProblem } from '../model/problem.ts';
import { normalizePrefix } from '../net/ipv4.ts';
import { plan } from '../plan/engine.ts';
import type { Logger } from '../report/log.ts';
import { mayWantRules, resolve } from '../resolve/resolve.ts';
import type { PublishedUnderlay } from '../resolve/resolve.ts';

export interface ReconcileInput {
  nodeName: string;
  tunnels: readonly IpipTunnel[];
  nodeAddresses: ReadonlyMap<string, string>;
  /** What other nodes' agents published (cluster mode). */
  published?: PublishedUnderlay;
  /** This node's own entries as its IpipNode has them, by tunnel (cluster mode); the report compares with them. */
  reported?: ReadonlyMap<string, NodeTunnelStatus>;
}

export async function reconcile(dataplane: Dataplane, input: ReconcileInput, log: Logger): Promise<ReconcileOutcome> {
  const observed = await dataplane.observe({ rules: input.tunnels.some(mayWantRules) });
  const resolutions = resolve({ ...input, kernel: observed });
  const { actions, conflicts } = plan(resolutions, observed);
  const results = await dataplane.apply(actions);

  const problems: TunnelProblem[] = [...problemsOf(resolutions), ...conflicts];
  for (const { action, error } of results) {
    const fields = {
      node: input.nodeName,
      tunnel: action.tunnel,
      object: action.kind,
      action: action.verb,
      link: action.link,
      detail: action.detail,
      commands: renderPlan([action]),
    };
    if (error === undefined) log.info('kernel change', fields);
    else {
      log.error('kernel change failed', { ...fields, error });
      problems.push({ tunnel: action.tunnel, reason: 'KernelError', message: error });
    }
  }
  for (const p of problems) log.warn('tunnel not programmed', { node: input.nodeName, ...p });
  return { observed, resolutions, results, problems };
}

/**
 * What the kernel monitor should wake this agent for after this reconcile: the links it
 * wants or owns (by the ownership alias) and the prefixes it routes.
 */
export function kernelInterest(outcome: Pick<ReconcileOutcome, 'observed' | 'resolutions'>): KernelInterest {
  const links = new Set<string>();
  const prefixes = new Set<string>();
  for (const r of outcome.resolutions) {
    if (r.outcome !== 'desired') continue;
    links.add(r.desired.link.name);
    for (const route of r.desired.routes) prefixes.add(normalizePrefix(route.dst));
  }
  for (const link of outcome.observed.links) if (linkOwner(link) !== undefined) links.add(link.name);
  return { links, prefixes };
}

/**
 * Counts drift corrections: kernel changes made for a tunnel whose desired state is the
 * same as when this agent last had it fully programmed. Those changes repair something
 * that changed under us (a route deleted, a link set down by hand), not a spec change.
 * A fresh agent has no memory, so what it adopts and fixes at start is not counted.
 * A pass that fails for a tunnel keeps what it was last programmed as, while its desired
 * state is the same: a repair that takes two passes (a route put back onto a link someone
 * set down meanwhile, refused until the link is up again) is still a repair.
 */
export class DriftTracker {
  private programmed = new Map<string, string>();

  /** Returns, per tunnel, how many of this reconcile's successful changes were drift corrections. */
  update(outcome: ReconcileOutcome): Map<string, number> {
    const failed = new Set(outcome.problems.map((p) => p.tunnel));
    const wanted = new Map<string, string>();
    for (const r of outcome.resolutions) if (r.outcome === 'desired') wanted.set(r.tunnel, JSON.stringify(r.desired));
    const corrections = new Map<string, number>();
    for (const { action, error } of outcome.results) {
      const fingerprint = wanted.get(action.tunnel);
      if (error === undefined && fingerprint !== undefined && this.programmed.get(action.tunnel) === fingerprint) {
        corrections.set(action.tunnel, (corrections.get(action.tunnel) ?? 0) + 1);
      }
    }
    const programmed = new Map<string, string>();
    for (const [tunnel, fingerprint] of wanted) {
      if (!failed.has(tunnel) || this.programmed.get(tunnel) === fingerprint) programmed.set(tunnel, fingerprint);
    }
    this.programmed = programmed;
    return corrections;
  }
}
