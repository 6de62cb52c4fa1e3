// Cluster mode: the node agent of a DaemonSet. Informers (supervised list+watch caches) of
// IpipTunnels and Nodes, the kernel monitor and a periodic resync all only *request* a
// reconcile of this node; a coalescing runner runs it (observe -> resolve -> plan ->
// apply), then this node's status entries and Events are reported. The agent holding the
// Lease also writes each tunnel's aggregate status.
//
// Nothing is swept before both caches have listed once, and the caches are only ever
// replaced by a successful list: an API server that goes away leaves the kernel as it is.

import type { IpipTunnel } from '../api/types.ts';
import type { Dataplane } from '../dataplane/dataplane.ts';
import { NO_INTEREST } from '../dataplane/monitor.ts';
import type { KernelInterest } from '../dataplane/monitor.ts';
import { ApiError, nodeAddressesOf, tunnelOf } from '../kube/client.ts';
import type { KubeClient, NodeAddresses } from '../kube/client.ts';
import { EventRecorder } from '../report/events.ts';
import type { Logger } from '../report/log.ts';
import type { AgentMetrics } from '../report/metrics.ts';
import {
  AGGREGATE_FIELD_MANAGER, aggregateStatus, endpointEntry, entryOf, nodeFieldManager, sameAggregate, sameEntry,
} from '../report/status.ts';
import type { EndpointStatus, IpipTunnelStatus } from '../api/types.ts';
import { concernsNode, nodesReadBy } from '../resolve/resolve.ts';
import type { TunnelProblem } from '../resolve/types.ts';
import { LeaseElector } from './lease.ts';
import { DriftTracker, kernelInterest, reconcile } from './reconcile.ts';
import type { ReconcileOutcome } from './reconcile.ts';
import { Reflector } from './reflector.ts';
import { backoffMs, CoalescingRunner } from './runner.ts';

export interface ClusterAgentOptions {
  nodeName: string;
  client: KubeClient;
  dataplane: Dataplane;
  log: Logger;
  metrics: AgentMetrics;
  resyncMs: number;
  debounceMs: number;
  /** Where the Lease for the aggregate status lives. */
  lease: { namespace: string; name: string };
}

export interface ClusterAgent {
  /** true, or why not ready: ready once both caches have listed and the node was reconciled once. */
  ready(): true | string;
  /** true, or why not healthy: a reconcile that has run for minutes is stuck. */
  healthy(): true | string;
  /** Stops watching and reconciling; tunnels stay as they are; the Lease is released. */
  stop(): Promise<void>;
}

/** A reconcile (two `ip` processes with 30 s timeouts, a few API writes) running longer than this is stuck. */
const STUCK_AFTER_MS = 5 * 60_000;
/** Status writes in flight at once: many tunnels changing together should not queue one by one. */
const WRITE_CONCURRENCY = 8;

/** Runs fn over items with at most `limit` at a time; resolves when all are done. */
async function eachLimited<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

export function runClusterAgent(o: ClusterAgentOptions): ClusterAgent {
  const { client, log, metrics, nodeName } = o;
  const events = new EventRecorder(client, nodeName, log);
  const drift = new DriftTracker();
  let nodeFailures = 0;
  let aggregateFailures = 0;
  let reconciledOnce = false;
  let reconcilingSince: number | undefined;
  /** What the kernel monitor wakes us for: what the last reconcile programmed (routes of ours, on our links, for our prefixes). */
  let interest: KernelInterest = NO_INTEREST;

  const nodeRunner = new CoalescingRunner(() => reconcileNode(), { debounceMs: o.debounceMs });
  const aggregateRunner = new CoalescingRunner(() => writeAggregates(), { debounceMs: o.debounceMs });

  const tunnels = new Reflector<IpipTunnel>({
    what: 'ipiptunnels',
    list: () => client.listTunnels(),
    watch: (rv, handlers) => client.watchTunnels(rv, handlers),
    fromWatch: (object) => tunnelOf(object as unknown as IpipTunnel),
    key: (t) => t.metadata.name,
    same: (a, b) => a.metadata.resourceVersion === b.metadata.resourceVersion,
    resourceVersion: (t) => t.metadata.resourceVersion,
  }, {
    log,
    // Every agent sees every tunnel and every status write in the cluster; only those that
    // name this node (before or after) can change its kernel or its entries. The Lease
    // holder's aggregates cover all tunnels.
    onChange: (changes) => {
      if (changes.some(({ old, current }) => concernsNode(old, nodeName) || concernsNode(current, nodeName))) nodeRunner.request();
      if (elector.isLeader) aggregateRunner.request();
    },
    // A fresh list (start, 410, periodic) is when a full pass is due, whatever it changed:
    // at start it adopts and sweeps even when no tunnel names this node.
    onList: (why) => {
      metrics.recordList('ipiptunnels', why);
      nodeRunner.request();
    },
  });
  const nodes = new Reflector<NodeAddresses>({
    what: 'nodes',
    list: () => client.listNodes(),
    watch: (rv, handlers) => client.watchNodes(rv, handlers),
    fromWatch: (object) => nodeAddressesOf(object),
    key: (n) => n.name,
    // Only the address matters: Node status heartbeats change nothing here.
    same: (a, b) => a.internalIP === b.internalIP,
    resourceVersion: () => undefined, // nothing is written to Nodes
  }, {
    log,
    onChange: (changes) => {
      const read = nodesReadBy(tunnels.items(), nodeName);
      if (changes.some(({ old, current }) => read.has((current ?? old)!.name))) nodeRunner.request();
    },
    onList: (why) => {
      metrics.recordList('nodes', why);
      nodeRunner.request();
    },
  });
  const elector = new LeaseElector(client, {
    namespace: o.lease.namespace, name: o.lease.name, identity: nodeName, log,
    onChange: (leader) => {
      metrics.setLeader(leader);
      if (leader) aggregateRunner.request(0);
    },
  });

  async function reconcileNode(): Promise<number | undefined> {
    // Both caches must have listed once: an empty cache would sweep every tunnel.
    if (!tunnels.synced || !nodes.synced) return undefined;
    const list = tunnels.items();
    const nodeAddresses = new Map<string, string>();
    for (const n of nodes.items()) if (n.internalIP !== undefined) nodeAddresses.set(n.name, n.internalIP);

    const started = performance.now();
    reconcilingSince = Date.now();
    let outcome: ReconcileOutcome;
    try {
      outcome = await reconcile(o.dataplane, { nodeName, tunnels: list, nodeAddresses }, log);
    } catch (error) {
      metrics.recordReconcile('error', (performance.now() - started) / 1000);
      log.error('reconcile failed', { node: nodeName, error: String((error as Error).message) });
      nodeFailures += 1;
      return backoffMs(nodeFailures);
    } finally {
      reconcilingSince = undefined;
    }
    const kernelFailed = outcome.results.some((r) => r.error !== undefined);
    metrics.recordReconcile(kernelFailed ? 'error' : outcome.problems.length > 0 ? 'requeue' : 'success', (performance.now() - started) / 1000);
    metrics.recordChanges(outcome.results);
    interest = kernelInterest(outcome);
    const corrections = drift.update(outcome);
    metrics.recordDriftCorrections([...corrections.values()].reduce((a, b) => a + b, 0));
    reconciledOnce = true;

    const reported = await report(list, outcome, corrections);
    if (outcome.problems.length === 0 && reported) {
      nodeFailures = 0;
      return undefined;
    }
    nodeFailures += 1;
    return backoffMs(nodeFailures);
  }

  /** Writes this node's status entries where they changed, records Events and tunnel metrics. */
  async function report(list: readonly IpipTunnel[], outcome: ReconcileOutcome, corrections: ReadonlyMap<string, number>): Promise<boolean> {
    const firstProblem = new Map<string, TunnelProblem>();
    for (const p of outcome.problems) if (!firstProblem.has(p.tunnel)) firstProblem.set(p.tunnel, p);
    const changes = new Map<string, string[]>();
    for (const { action, error } of outcome.results) {
      if (error !== undefined) continue;
      changes.set(action.tunnel, [...(changes.get(action.tunnel) ?? []), `${action.action} ${action.object} ${action.detail}`]);
    }
    const linksByName = new Map(outcome.observed.links.map((l) => [l.name, l]));
    const samples: Parameters<AgentMetrics['setTunnels']>[0] = [];
    const writes: Array<{ tunnel: IpipTunnel; endpoints: EndpointStatus[] }> = [];

    const resolutions = new Map(outcome.resolutions.map((r) => [r.tunnel, r]));
    for (const tunnel of list) {
      const name = tunnel.metadata.name;
      const resolution = resolutions.get(name);
      if (resolution === undefined) continue;
      const mine = entryOf(tunnel, nodeName);
      const changed = changes.get(name);
      if (changed !== undefined) {
        const reason = resolution.outcome === 'absent' ? 'EndpointRemoved' : corrections.has(name) ? 'DriftCorrected' : 'Programmed';
        void events.record({ tunnel, type: 'Normal', reason, message: `node ${nodeName}: ${changed.join('; ')}` });
      }
      if (resolution.outcome === 'absent') {
        // No longer an endpoint: the kernel objects went above; the status entry goes too.
        if (mine !== undefined) writes.push({ tunnel, endpoints: [] });
        continue;
      }
      const wanted = endpointEntry(nodeName, tunnel, resolution, firstProblem.get(name));
      if (resolution.outcome === 'desired') {
        const { link } = resolution.desired;
        const stats = linksByName.get(link.name)?.stats;
        samples.push({ tunnel: name, link: link.name, mode: link.mode, local: link.local, remote: link.remote, up: wanted.ready === true, ...(stats === undefined ? {} : { stats }) });
      }
      if (sameEntry(mine, wanted)) continue;
      if (wanted.ready !== true && (mine?.reason !== wanted.reason || mine?.message !== wanted.message)) {
        void events.record({ tunnel, type: 'Warning', reason: wanted.reason ?? 'Unknown', message: `node ${nodeName}: ${wanted.message ?? ''}` });
      }
      writes.push({ tunnel, endpoints: [wanted] });
    }
    metrics.setTunnels(samples);
    let allWritten = true;
    await eachLimited(writes, WRITE_CONCURRENCY, async (w) => {
      if (!(await writeStatus(w.tunnel, nodeFieldManager(nodeName), { endpoints: w.endpoints }))) allWritten = false;
    });
    return allWritten;
  }

  /**
   * Server-side apply of a status part. The answer goes into the cache at once: comparing
   * the next wanted status with a cache that has not seen this write's watch event yet
   * would write the same thing again.
   */
  async function writeStatus(tunnel: IpipTunnel, manager: string, status: IpipTunnelStatus): Promise<boolean> {
    const name = tunnel.metadata.name;
    try {
      tunnels.offer(await client.applyTunnelStatus(name, manager, status));
      log.debug('status written', { tunnel: name, manager, status: JSON.stringify(status) });
      return true;
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) return true; // deleted meanwhile: nothing to report on
      log.warn('status not written; will retry', { tunnel: name, node: nodeName, manager, error: error instanceof Error ? error.message : String(error) });
      return false;
    }
  }

  async function writeAggregates(): Promise<number | undefined> {
    if (!elector.isLeader || !tunnels.synced) return undefined;
    let failed = false;
    const now = new Date();
    const changed = tunnels.items().map((tunnel) => ({ tunnel, wanted: aggregateStatus(tunnel, now) }))
      .filter(({ tunnel, wanted }) => !sameAggregate(tunnel.status, wanted));
    await eachLimited(changed, WRITE_CONCURRENCY, async ({ tunnel, wanted }) => {
      if (!(await writeStatus(tunnel, AGGREGATE_FIELD_MANAGER, wanted))) failed = true;
    });
    aggregateFailures = failed ? aggregateFailures + 1 : 0;
    return failed ? backoffMs(aggregateFailures) : undefined;
  }

  const stopMonitor = o.dataplane.watch((concernsUs) => {
    metrics.recordKernelEvent(concernsUs);
    if (concernsUs) nodeRunner.request();
  }, () => interest);
  const resync = setInterval(() => {
    nodeRunner.request();
    if (elector.isLeader) aggregateRunner.request();
  }, o.resyncMs);
  tunnels.start();
  nodes.start();
  elector.start();
  log.info('agent started', { mode: 'cluster', node: nodeName, server: client.server, lease: `${o.lease.namespace}/${o.lease.name}` });

  return {
    ready: () => {
      if (!tunnels.synced) return 'ipiptunnels not listed yet';
      if (!nodes.synced) return 'nodes not listed yet';
      if (!reconciledOnce) return 'this node not reconciled yet';
      return true;
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
      await Promise.all([tunnels.stop(), nodes.stop()]);
      await Promise.all([nodeRunner.stop(), aggregateRunner.stop()]);
      await elector.stop();
    },
  };
}
