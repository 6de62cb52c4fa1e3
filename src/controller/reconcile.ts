// One reconcile of this node: observe -> resolve -> plan -> apply. Level-based: it depends
// on the current tunnels and kernel only, never on what event woke it.

import type { IpipTunnel } from '../api/types.ts';
import type { ActionResult, Dataplane } from '../dataplane/dataplane.ts';
import { plan } from '../plan/plan.ts';
import { renderCommand } from '../plan/render.ts';
import { OBJECT_KINDS, VERBS } from '../plan/types.ts';
import type { ObjectKind, Verb } from '../plan/types.ts';
import type { Logger } from '../report/log.ts';
import { problemsOf, resolve } from '../resolve/resolve.ts';
import type { TunnelProblem, TunnelResolution } from '../resolve/types.ts';

export interface ReconcileInput {
  nodeName: string;
  tunnels: readonly IpipTunnel[];
  nodeAddresses: ReadonlyMap<string, string>;
}

export interface ReconcileOutcome {
  resolutions: TunnelResolution[];
  results: ActionResult[];
  /** Every tunnel that is not as its spec asks, and why: resolve errors, waiting, conflicts, kernel errors. */
  problems: TunnelProblem[];
}

export type ChangeCounts = Record<ObjectKind, Record<Verb, number>>;

export function emptyCounts(): ChangeCounts {
  const counts = {} as ChangeCounts;
  for (const o of OBJECT_KINDS) counts[o] = Object.fromEntries(VERBS.map((v) => [v, 0])) as Record<Verb, number>;
  return counts;
}

/** Successful changes by object and action, every pair present (0 when nothing changed). */
export function countChanges(results: readonly ActionResult[]): ChangeCounts {
  const counts = emptyCounts();
  for (const r of results) if (r.error === undefined) counts[r.action.object][r.action.action] += 1;
  return counts;
}

export async function reconcile(dataplane: Dataplane, input: ReconcileInput, log: Logger): Promise<ReconcileOutcome> {
  const observed = await dataplane.observe();
  const resolutions = resolve({ ...input, kernel: observed });
  const { actions, conflicts } = plan(resolutions, observed);
  const results = await dataplane.apply(actions);

  const problems: TunnelProblem[] = [...problemsOf(resolutions), ...conflicts];
  for (const { action, error } of results) {
    const fields = {
      node: input.nodeName, tunnel: action.tunnel, object: action.object, action: action.action,
      link: action.link, detail: action.detail, commands: action.commands.map((c) => `ip ${renderCommand(c)}`),
    };
    if (error === undefined) log.info('kernel change', fields);
    else {
      log.error('kernel change failed', { ...fields, error });
      problems.push({ tunnel: action.tunnel, reason: 'KernelError', message: error });
    }
  }
  for (const p of problems) log.warn('tunnel not programmed', { node: input.nodeName, ...p });
  return { resolutions, results, problems };
}
