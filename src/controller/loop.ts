// The agent's one control loop, the same in a cluster and standalone. Requests to
// reconcile come from the tunnel source (informers, or a manifest file), from the kernel
// monitor (only for events about what the last pass programmed) and from a periodic
// resync; a coalescing runner runs one pass at a time: observe -> resolve -> plan ->
// apply, then the pure report of the pass goes to the metrics and to the report sink.
// A wake-up by kernel events alone is first decided on the view (view.ts: the last read
// and the events since): when resolve and plan find nothing to do there, the events were
// the echoes of the agent's own writes (or changes no pass would undo) and nothing is read
// or written; otherwise a full pass runs. A wake-up by a source that gives the very
// objects it gave before is decided the same way; the resync, retries and a real source
// change always run a full pass. A pass that left problems, or whose report could not be
// delivered, is retried with backoff. Where the modes differ is only the source and the sink.

import type { IpipTunnel } from '../api/types.ts';
import type { Dataplane } from '../dataplane/dataplane.ts';
import { renderPlan } from '../dataplane/render.ts';
import { NO_INTEREST } from '../model/kernel.ts';
import type { KernelChange, KernelInterest } from '../model/kernel.ts';
import type { ReconcileOutcome } from '../model/outcome.ts';
import { problemClass, problemsOf } from '../model/problem.ts';
import type { TunnelProblem } from '../model/problem.ts';
import { plan } from '../plan/engine.ts';
import type { Logger } from '../report/log.ts';
import type { AgentMetrics } from '../report/metrics.ts';
import { reportReconcile } from '../report/report.ts';
import type { NodeReport } from '../report/report.ts';
import { resolve } from '../resolve/resolve.ts';
import { DriftTracker, kernelInterest, reconcile } from './reconcile.ts';
import type { ReconcileInput } from './reconcile.ts';
import { backoffMs, CoalescingRunner } from './runner.ts';
import { KernelView } from './view.ts';

/** Where the tunnels come from: informers in a cluster, a manifest file standalone. */
export interface TunnelSource {
  /** Starts watching; `changed` is called for every change that concerns this node. */
  start(changed: () => void): void;
  /**
   * What to reconcile now; undefined while there is nothing to trust yet (not listed, never
   * loaded): then nothing runs, and nothing is swept.
   */
  current(): Promise<Omit<ReconcileInput, 'nodeName'> | undefined>;
  /** true, or why the source is not ready. */
  ready(): true | string;
  stop(): Promise<void>;
}

/** Where a pass's report goes besides metrics and logs: the API server, or nowhere. */
export interface ReportSink {
  /** Resolves false when part of it could not be delivered (the pass is then retried). */
  deliver(report: NodeReport, tunnels: readonly IpipTunnel[]): Promise<boolean>;
}

export const NO_SINK: ReportSink = { deliver: async () => true };

export interface AgentLoopOptions {
  nodeName: string;
  dataplane: Dataplane;
  source: TunnelSource;
  sink: ReportSink;
  log: Logger;
  /** Standalone mode serves no metrics. */
  metrics?: AgentMetrics;
  resyncMs: number;
  debounceMs: number;
}

export interface AgentLoop {
  /** true, or why not ready: ready once the source is and this node was reconciled once. */
  ready(): true | string;
  /** true, or why not healthy: a reconcile that has run for minutes is stuck. */
  healthy(): true | string;
  /** Stops watching and reconciling, after the pass under way; the kernel stays as it is. */
  stop(): Promise<void>;
}

/**
 * How long a request to reconcile from the source waits for more to come: an editor's
 * save (a new file renamed over the old) or a burst of informer events is one pass. More
 * that come while a pass runs make one more pass after it, whatever this is.
 */
export const DEBOUNCE_MS = 50;

/**
 * The debounce of a wake-up by kernel events: the lines of one change (a link's deletion
 * takes its addresses and routes with it) come within a millisecond or two, and a repair
 * should not wait for a file's. A burst that is split anyway costs a check on the view.
 */
export const KERNEL_DEBOUNCE_MS = 20;

/** A reconcile (an `ip` read and an `ip` write with 30 s timeouts, a few API writes) running longer than this is stuck. */
const STUCK_AFTER_MS = 5 * 60_000;

/** The same objects (not equal ones: a source gives new objects for anything that changed). */
function sameInput(a: Omit<ReconcileInput, 'nodeName'>, b: Omit<ReconcileInput, 'nodeName'> | undefined): boolean {
  return (
    b !== undefined &&
    a.tunnels === b.tunnels &&
    a.nodeAddresses === b.nodeAddresses &&
    a.published === b.published &&
    a.reported === b.reported
  );
}

export function runAgentLoop(o: AgentLoopOptions): AgentLoop {
  const { log, metrics, nodeName } = o;
  const drift = new DriftTracker();
  let failuresInARow = 0;
  let reconciledOnce = false;
  let reconcilingSince: number | undefined;
  /** What the kernel monitor wakes us for: what the last pass programmed (routes of ours, on our links, for our prefixes). */
  let interest: KernelInterest = NO_INTEREST;
  /** The kernel as the last read and the events since show it; undefined until a pass has read it. */
  let view: KernelView | undefined;
  /** The events since the running pass began to read: they are newer than that read, and go onto it. */
  let sinceRead: KernelChange[] | undefined;
  /** Whether the next pass must read the kernel: the resync, or the first pass. */
  let mustRead = true;
  /** Whether the source said it changed since the last pass; it must read then unless the source gives what it gave before. */
  let sourceChanged = false;
  /** What the source gave the last full pass. */
  let lastInput: Omit<ReconcileInput, 'nodeName'> | undefined;
  /** The problems the last full pass found, by tunnel and reason: a view with other problems needs a full pass. */
  let lastProblems = '';
  /**
   * The links the last pass wanted, and the prefixes of the routes it wanted, but for those
   * on a link whose action failed: the view showing one of them gone or down is drift for sure.
   */
  let sureLinks: ReadonlySet<string> = new Set();
  let surePrefixes: ReadonlySet<string> = new Set();

  /** When the retry of a pass that left problems is due (the runner's timer runs it); undefined: none pending. */
  let retryAt: number | undefined;
  /** The actions of the last full pass that failed, as commands: the view may still want them until the retry. */
  let lastFailed = new Set<string>();

  const retry = (): number => {
    failuresInARow += 1;
    const delayMs = backoffMs(failuresInARow);
    retryAt = Date.now() + delayMs;
    return delayMs;
  };

  const problemKey = (problems: readonly TunnelProblem[]) =>
    problems
      .filter((p) => p.reason !== 'KernelError')
      .map((p) => `${p.tunnel} ${p.reason}`)
      .sort()
      .join('\n');

  /**
   * Whether the view shows nothing for a pass to do: no action but those the last pass
   * tried and failed (their retry has its own time), and the same problems.
   */
  function viewInSync(input: Omit<ReconcileInput, 'nodeName'>): boolean {
    if (view === undefined || view.trusted() !== true) return false;
    // A wanted link gone or down, or a wanted route gone, is work for sure: no plan needed to see it.
    if (view.lacks(sureLinks, surePrefixes)) return false;
    const kernel = view.state();
    const resolutions = resolve({ nodeName, ...input, kernel });
    const { actions, conflicts } = plan(resolutions, kernel);
    return (
      actions.every((a) => lastFailed.has(renderPlan([a]).join('\n'))) &&
      problemKey([...problemsOf(resolutions), ...conflicts]) === lastProblems
    );
  }

  async function pass(): Promise<number | undefined> {
    const input = await o.source.current();
    if (input === undefined) return undefined;
    // A source that gives the very objects it gave before (a manifest saved again unchanged,
    // a second event of one save) changed nothing: that wake-up is decided on the view too.
    if (sourceChanged && !sameInput(input, lastInput)) mustRead = true;
    sourceChanged = false;
    const retryDue = retryAt !== undefined && Date.now() >= retryAt;
    if (!mustRead && !retryDue) {
      if (viewInSync(input)) {
        metrics?.recordKernelEventCheck('in_sync');
        // A retry still to come keeps its time (the runner forgets it when a request came meanwhile).
        return retryAt === undefined ? undefined : retryAt - Date.now();
      }
      metrics?.recordKernelEventCheck('reconcile');
    }
    mustRead = false;
    retryAt = undefined;
    lastInput = input;
    const started = performance.now();
    reconcilingSince = Date.now();
    let outcome: ReconcileOutcome;
    sinceRead = [];
    try {
      outcome = await reconcile(o.dataplane, { nodeName, ...input }, log);
    } catch (error) {
      metrics?.recordReconcile('error', (performance.now() - started) / 1000);
      log.error('reconcile failed', { node: nodeName, error: String((error as Error).message) });
      view = undefined;
      sinceRead = undefined;
      return retry();
    } finally {
      reconcilingSince = undefined;
    }
    view = new KernelView(outcome.observed);
    for (const change of sinceRead) view.apply(change);
    sinceRead = undefined;
    view.wrote(outcome.results);
    lastProblems = problemKey(outcome.problems);
    const failed = outcome.results.filter((r) => r.error !== undefined).map((r) => r.action);
    lastFailed = new Set(failed.map((a) => renderPlan([a]).join('\n')));
    interest = kernelInterest(outcome);
    const failedLinks = new Set(failed.map((a) => a.link));
    const wanted = outcome.resolutions.flatMap((r) => (r.outcome === 'desired' ? [r.desired] : []));
    sureLinks = new Set(wanted.map((d) => d.link.name).filter((name) => !failedLinks.has(name)));
    surePrefixes = new Set(wanted.flatMap((d) => d.routes.filter((r) => !failedLinks.has(r.dev)).map((r) => r.dst)));
    const corrections = drift.update(outcome);
    // Said in the log too, not only as a cluster Event: standalone, the log is all there is.
    for (const [tunnel, count] of corrections) log.info('drift corrected', { node: nodeName, tunnel, changes: count });
    const report = reportReconcile(nodeName, input.tunnels, outcome, corrections, input.reported);
    if (metrics !== undefined) {
      metrics.recordReconcile(report.result, (performance.now() - started) / 1000);
      metrics.recordChanges(report.changes);
      metrics.recordDriftCorrections(report.driftCorrections);
      metrics.setTunnels(report.tunnels);
    }
    if (!reconciledOnce) {
      // How long start-up took, from the process's start (Node's own included) to this
      // node programmed: what a restarted agent costs before it repairs anything. Of it,
      // reconcileMs is the pass itself (its read, plan and write), the rest is start-up:
      // Node, the modules, the configuration, and the source's first lists.
      log.info('first reconcile done', {
        node: nodeName,
        tunnels: input.tunnels.length,
        sinceProcessStartMs: Math.round(process.uptime() * 1000),
        reconcileMs: Math.round(performance.now() - started),
      });
    }
    reconciledOnce = true;
    const delivered = await o.sink.deliver(report, input.tunnels);
    // Only what may pass by itself is retried: a command the kernel refused, a report not
    // delivered. A tunnel waiting or refused stays so until its spec, the kernel or the
    // cluster changes, and each of those wakes the loop (and the resync looks again).
    if (delivered && !outcome.problems.some((p) => problemClass(p.reason) === 'transient')) {
      failuresInARow = 0;
      return undefined;
    }
    return retry();
  }

  const runner = new CoalescingRunner(pass, { debounceMs: o.debounceMs });
  const stopMonitor = o.dataplane.watch(
    ({ concernsUs, change }) => {
      metrics?.recordKernelEvent(concernsUs);
      if (sinceRead !== undefined) sinceRead.push(change);
      else view?.apply(change);
      if (concernsUs) runner.request(Math.min(KERNEL_DEBOUNCE_MS, o.debounceMs));
    },
    () => interest,
  );
  const resync = setInterval(() => {
    mustRead = true;
    runner.request();
  }, o.resyncMs);
  o.source.start(() => {
    sourceChanged = true;
    runner.request();
  });
  runner.request(0);

  return {
    ready: () => {
      const source = o.source.ready();
      if (source !== true) return source;
      return reconciledOnce ? true : 'this node not reconciled yet';
    },
    healthy: () => {
      if (reconcilingSince !== undefined && Date.now() - reconcilingSince > STUCK_AFTER_MS) {
        return `a reconcile has been running for ${Math.round((Date.now() - reconcilingSince) / 1000)} s`;
      }
      return true;
    },
    stop: async () => {
      clearInterval(resync);
      stopMonitor();
      await o.source.stop();
      await runner.stop();
    },
  };
}
