// Cluster mode: the node agent of a DaemonSet. The tunnel source is a pair of informers
// (supervised list+watch caches of IpipTunnels and Nodes) that ask for a reconcile only
// for changes that concern this node; the report sink writes this node's status entries
// (server-side apply, only where they changed) and records Events. The agent holding the
// Lease also writes each tunnel's aggregate status. The loop itself is loop.ts, shared
// with standalone mode.
//
// Nothing is swept before both caches have listed once, and the caches are only ever
// replaced by a successful list: an API server that goes away leaves the kernel as it is.

import type { IpipTunnel, IpipTunnelStatus } from '../api/types.ts';
import type { Dataplane } from '../dataplane/dataplane.ts';
import { ApiError, nodeAddressesOf, tunnelOf } from '../kube/client.ts';
import type { KubeClient, NodeAddresses } from '../kube/client.ts';
import { EventRecorder } from '../report/events.ts';
import type { Logger } from '../report/log.ts';
import type { AgentMetrics } from '../report/metrics.ts';
import { AGGREGATE_FIELD_MANAGER, aggregateStatus, nodeFieldManager, sameAggregate } from '../report/status.ts';
import { concernsNode, nodesReadBy } from '../resolve/resolve.ts';
import { LeaseElector } from './lease.ts';
import { runAgentLoop } from './loop.ts';
import type { AgentLoop, ReportSink, TunnelSource } from './loop.ts';
import { Reflector } from './reflector.ts';
import type { ListReason, ReflectorSource } from './reflector.ts';
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

export interface InformerSourceOptions {
  nodeName: string;
  log: Logger;
  /** Told of every fresh list, by resource and why (metrics). */
  onList?: (resource: string, why: ListReason) => void;
  /** Told of every change of any tunnel, this node's or not (the Lease holder's aggregates). */
  onAnyTunnelChange?: () => void;
}

export interface InformerSource extends TunnelSource {
  /** The IpipTunnel cache: status writes put their answers into it. */
  readonly tunnels: Reflector<IpipTunnel>;
}

/** The IpipTunnel and Node informers of a KubeClient. */
export function clientSources(client: KubeClient): {
  tunnels: ReflectorSource<IpipTunnel>;
  nodes: ReflectorSource<NodeAddresses>;
} {
  return {
    tunnels: {
      what: 'ipiptunnels',
      list: () => client.listTunnels(),
      watch: (rv, handlers) => client.watchTunnels(rv, handlers),
      fromWatch: (object) => tunnelOf(object as unknown as IpipTunnel),
      key: (t) => t.metadata.name,
      same: (a, b) => a.metadata.resourceVersion === b.metadata.resourceVersion,
      resourceVersion: (t) => t.metadata.resourceVersion,
    },
    nodes: {
      what: 'nodes',
      list: () => client.listNodes(),
      watch: (rv, handlers) => client.watchNodes(rv, handlers),
      fromWatch: (object) => nodeAddressesOf(object),
      key: (n) => n.name,
      // Only the address matters: Node status heartbeats change nothing here.
      same: (a, b) => a.internalIP === b.internalIP,
      resourceVersion: () => undefined, // nothing is written to Nodes
    },
  };
}

/**
 * The tunnel source of a cluster: a cache of IpipTunnels and one of Nodes. It asks for a
 * reconcile only for changes that can change what resolve gives this node, and after every
 * fresh list; it has nothing to reconcile until both caches have listed once.
 */
export function informerSource(
  sources: { tunnels: ReflectorSource<IpipTunnel>; nodes: ReflectorSource<NodeAddresses> },
  o: InformerSourceOptions,
): InformerSource {
  const { nodeName, log } = o;
  let requestReconcile: () => void = () => {};
  const tunnels = new Reflector<IpipTunnel>(sources.tunnels, {
    log,
    // Every agent sees every tunnel and every status write in the cluster; only those that
    // name this node (before or after) can change its kernel or its entries.
    onChange: (changes) => {
      if (changes.some(({ old, current }) => concernsNode(old, nodeName) || concernsNode(current, nodeName)))
        requestReconcile();
      o.onAnyTunnelChange?.();
    },
    // A fresh list (start, 410, periodic) is when a full pass is due, whatever it changed:
    // at start it adopts and sweeps even when no tunnel names this node.
    onList: (why) => {
      o.onList?.('ipiptunnels', why);
      requestReconcile();
    },
  });
  const nodes = new Reflector<NodeAddresses>(sources.nodes, {
    log,
    onChange: (changes) => {
      const read = nodesReadBy(tunnels.items(), nodeName);
      if (changes.some(({ old, current }) => read.has((current ?? old)!.name))) requestReconcile();
    },
    onList: (why) => {
      o.onList?.('nodes', why);
      requestReconcile();
    },
  });
  return {
    tunnels,
    start: (changed) => {
      requestReconcile = changed;
      tunnels.start();
      nodes.start();
    },
    current: async () => {
      // Both caches must have listed once: an empty cache would sweep every tunnel.
      if (!tunnels.synced || !nodes.synced) return undefined;
      const nodeAddresses = new Map<string, string>();
      for (const n of nodes.items()) if (n.internalIP !== undefined) nodeAddresses.set(n.name, n.internalIP);
      const byName = new Map(tunnels.items().map((t) => [t.metadata.name, t]));
      const published = (tunnel: string, node: string) =>
        byName.get(tunnel)?.status?.endpoints?.find((e) => e.nodeName === node)?.underlayAddress;
      return { tunnels: tunnels.items(), nodeAddresses, published };
    },
    ready: () => {
      if (!tunnels.synced) return 'ipiptunnels not listed yet';
      if (!nodes.synced) return 'nodes not listed yet';
      return true;
    },
    stop: async () => {
      await Promise.all([tunnels.stop(), nodes.stop()]);
    },
  };
}

export function runClusterAgent(o: ClusterAgentOptions): AgentLoop {
  const { client, log, metrics, nodeName } = o;
  const events = new EventRecorder(client, nodeName, log);
  let aggregateFailures = 0;

  const aggregateRunner = new CoalescingRunner(() => writeAggregates(), { debounceMs: o.debounceMs });
  const informers = informerSource(clientSources(client), {
    nodeName,
    log,
    onList: (resource, why) => metrics.recordList(resource, why),
    // The Lease holder's aggregates cover all tunnels.
    onAnyTunnelChange: () => {
      if (elector.isLeader) aggregateRunner.request();
    },
  });
  const { tunnels } = informers;
  const elector = new LeaseElector(client, {
    namespace: o.lease.namespace,
    name: o.lease.name,
    identity: nodeName,
    log,
    onChange: (leader) => {
      metrics.setLeader(leader);
      if (leader) aggregateRunner.request(0);
    },
  });

  const source: TunnelSource = {
    ...informers,
    start: (changed) => {
      informers.start(changed);
      elector.start();
    },
    stop: async () => {
      await informers.stop();
      await aggregateRunner.stop();
      await elector.stop();
    },
  };

  const sink: ReportSink = {
    deliver: async (report) => {
      for (const e of report.events) void events.record(e);
      let allWritten = true;
      await eachLimited(report.statusWrites, WRITE_CONCURRENCY, async (w) => {
        if (!(await writeStatus(w.tunnel, nodeFieldManager(nodeName), { endpoints: w.endpoints }))) allWritten = false;
      });
      // Each pass (the resync's too) gives the Lease holder a look at the aggregates.
      if (elector.isLeader) aggregateRunner.request();
      return allWritten;
    },
  };

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
      log.warn('status not written; will retry', {
        tunnel: name,
        node: nodeName,
        manager,
        error: error instanceof Error ? error.message : String(error),
      });
      return false;
    }
  }

  async function writeAggregates(): Promise<number | undefined> {
    if (!elector.isLeader || !tunnels.synced) return undefined;
    let failed = false;
    const now = new Date();
    const changed = tunnels
      .items()
      .map((tunnel) => ({ tunnel, wanted: aggregateStatus(tunnel, now) }))
      .filter(({ tunnel, wanted }) => !sameAggregate(tunnel.status, wanted));
    await eachLimited(changed, WRITE_CONCURRENCY, async ({ tunnel, wanted }) => {
      if (!(await writeStatus(tunnel, AGGREGATE_FIELD_MANAGER, wanted))) failed = true;
    });
    aggregateFailures = failed ? aggregateFailures + 1 : 0;
    return failed ? backoffMs(aggregateFailures) : undefined;
  }

  const loop = runAgentLoop({
    nodeName,
    dataplane: o.dataplane,
    source,
    sink,
    log,
    metrics,
    resyncMs: o.resyncMs,
    debounceMs: o.debounceMs,
  });
  log.info('agent started', {
    mode: 'cluster',
    node: nodeName,
    server: client.server,
    lease: `${o.lease.namespace}/${o.lease.name}`,
  });
  return loop;
}
