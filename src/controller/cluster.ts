// Cluster mode: the node agent of a DaemonSet. The tunnel source is three informers
// (supervised list+watch caches of IpipTunnels, IpipNodes and Nodes) that ask for a
// reconcile only for changes that concern this node; the report sink writes this node's
// IpipNode (server-side apply, only when it changed) and records Events. The agent holding
// the Lease also writes each tunnel's aggregate status, from the IpipNodes. The loop
// itself is loop.ts, shared with standalone mode.
//
// Nothing is swept before every cache has listed once, and the caches are only ever
// replaced by a successful list: an API server that goes away leaves the kernel as it is.

import type { IpipNode, IpipTunnel, IpipTunnelStatus, NodeTunnelStatus } from '../api/types.ts';
import type { Dataplane } from '../dataplane/dataplane.ts';
import { ApiError, ipipNodeOf, nodeAddressesOf, tunnelOf } from '../kube/client.ts';
import type { KubeClient, NodeAddresses } from '../kube/client.ts';
import { EventRecorder } from '../report/events.ts';
import type { Logger } from '../report/log.ts';
import type { AgentMetrics } from '../report/metrics.ts';
import {
  AGGREGATE_FIELD_MANAGER,
  aggregateStatus,
  nodeFieldManager,
  readySummaryOf,
  sameAggregate,
} from '../report/status.ts';
import type { NodeReportOf } from '../report/status.ts';
import { concernsNode, nodesReadBy, publishedReadBy } from '../resolve/resolve.ts';
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
/** Events in flight at once (best effort, never ahead of the status writes). */
const EVENT_CONCURRENCY = 2;

/**
 * The Lease holder writes a tunnel's aggregate at most this often. Every write of an
 * IpipTunnel reaches every agent, and a mesh's object grows with its endpoints: while N
 * agents report, one write per report would make each agent receive N objects of size N.
 */
export const AGGREGATE_INTERVAL_MS = 1000;

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
  /** Told of every change of any tunnel or any node's report, this node's or not (the Lease holder's aggregates). */
  onAnyTunnelChange?: () => void;
}

export interface InformerSource extends TunnelSource {
  /** The IpipTunnel cache: aggregate writes put their answers into it. */
  readonly tunnels: Reflector<IpipTunnel>;
  /** The IpipNode cache: this node's writes put their answers into it. */
  readonly ipipNodes: Reflector<IpipNode>;
  /** The Node cache (names, uids, InternalIPs). */
  readonly nodes: Reflector<NodeAddresses>;
}

export interface ClusterSources {
  tunnels: ReflectorSource<IpipTunnel>;
  ipipNodes: ReflectorSource<IpipNode>;
  nodes: ReflectorSource<NodeAddresses>;
}

/** A node's entries, by tunnel name. */
function entriesOf(node: IpipNode | undefined): Map<string, NodeTunnelStatus> {
  return new Map((node?.tunnels ?? []).map((t) => [t.name, t]));
}

/** Every node's entries from the IpipNode cache, each node's read once (a pass asks for peers many times). */
function reportsIn(ipipNodes: Reflector<IpipNode>): NodeReportOf {
  const byNode = new Map<string, Map<string, NodeTunnelStatus>>();
  return (node, tunnel) => {
    let entries = byNode.get(node);
    if (entries === undefined) {
      entries = entriesOf(ipipNodes.get(node));
      byNode.set(node, entries);
    }
    return entries.get(tunnel);
  };
}

/**
 * Like reportsIn, for a run that lasts: a node's entries are indexed again when its
 * IpipNode in the cache is another object than the one they were read from.
 */
function currentReportsIn(ipipNodes: Reflector<IpipNode>): NodeReportOf {
  const byNode = new Map<string, { from: IpipNode | undefined; entries: Map<string, NodeTunnelStatus> }>();
  return (node, tunnel) => {
    const now = ipipNodes.get(node);
    let read = byNode.get(node);
    if (read === undefined || read.from !== now) {
      read = { from: now, entries: entriesOf(now) };
      byNode.set(node, read);
    }
    return read.entries.get(tunnel);
  };
}

/** Whether two versions of a node's IpipNode publish a different underlay address for one of these tunnels. */
function underlaysChanged(
  old: IpipNode | undefined,
  current: IpipNode | undefined,
  tunnels: ReadonlySet<string>,
): boolean {
  const a = entriesOf(old);
  const b = entriesOf(current);
  for (const name of tunnels) if (a.get(name)?.underlayAddress !== b.get(name)?.underlayAddress) return true;
  return false;
}

/**
 * Whether a change of a tunnel can change what a node does: added, deleted, its spec
 * changed (the API server raises the generation on every spec change and never on a
 * status write) or its deletion began. The Lease holder's aggregate writes reach every
 * agent of a mesh, and none of them needs a reconcile for it.
 */
function specChanged({ old, current }: { old: IpipTunnel | undefined; current: IpipTunnel | undefined }): boolean {
  return (
    old === undefined ||
    current === undefined ||
    old.metadata.generation !== current.metadata.generation ||
    old.metadata.deletionTimestamp !== current.metadata.deletionTimestamp
  );
}

/** The IpipTunnel, IpipNode and Node informers of a KubeClient. */
export function clientSources(client: KubeClient): ClusterSources {
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
    ipipNodes: {
      what: 'ipipnodes',
      list: () => client.listIpipNodes(),
      watch: (rv, handlers) => client.watchIpipNodes(rv, handlers),
      fromWatch: (object) => ipipNodeOf(object as unknown as IpipNode),
      key: (n) => n.metadata.name,
      same: (a, b) => a.metadata.resourceVersion === b.metadata.resourceVersion,
      resourceVersion: (n) => n.metadata.resourceVersion,
    },
    nodes: {
      what: 'nodes',
      list: () => client.listNodes(),
      watch: (rv, handlers) => client.watchNodes(rv, handlers),
      fromWatch: (object) => nodeAddressesOf(object),
      key: (n) => n.name,
      // Only the address (and which Node it is) matters: Node status heartbeats change nothing here.
      same: (a, b) => a.internalIP === b.internalIP && a.uid === b.uid,
      resourceVersion: () => undefined, // nothing is written to Nodes
    },
  };
}

/**
 * The tunnel source of a cluster: caches of IpipTunnels, IpipNodes and Nodes. It asks for
 * a reconcile only for changes that can change what resolve gives this node, or what it
 * reports, and after every fresh list; it has nothing to reconcile until every cache has
 * listed once.
 */
export function informerSource(sources: ClusterSources, o: InformerSourceOptions): InformerSource {
  const { nodeName, log } = o;
  let requestReconcile: () => void = () => {};
  const tunnels = new Reflector<IpipTunnel>(sources.tunnels, {
    log,
    // Every agent sees every tunnel and every aggregate write in the cluster; only those
    // that name this node (before or after) can change its kernel or its entries.
    onChange: (changes) => {
      if (changes.some((c) => specChanged(c) && (concernsNode(c.old, nodeName) || concernsNode(c.current, nodeName))))
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
  const ipipNodes = new Reflector<IpipNode>(sources.ipipNodes, {
    log,
    // A peer's published underlay addresses are what resolve reads; its readiness only the
    // aggregate does. This node's own object changed by someone else (or deleted) is
    // written again by the next pass; its own writes are offered to the cache and change nothing.
    onChange: (changes) => {
      const read = publishedReadBy(tunnels.items(), nodeName);
      if (
        changes.some(({ old, current }) => {
          const name = (current ?? old)!.metadata.name;
          const reads = read.get(name);
          return name === nodeName || (reads !== undefined && underlaysChanged(old, current, reads));
        })
      )
        requestReconcile();
      o.onAnyTunnelChange?.();
    },
    onList: (why) => {
      o.onList?.('ipipnodes', why);
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
    ipipNodes,
    nodes,
    start: (changed) => {
      requestReconcile = changed;
      tunnels.start();
      ipipNodes.start();
      nodes.start();
    },
    current: async () => {
      // Every cache must have listed once: an empty cache would sweep every tunnel, or
      // lose what this node has published.
      if (!tunnels.synced || !ipipNodes.synced || !nodes.synced) return undefined;
      const nodeAddresses = new Map<string, string>();
      for (const n of nodes.items()) if (n.internalIP !== undefined) nodeAddresses.set(n.name, n.internalIP);
      const reportOf = reportsIn(ipipNodes);
      const published = (tunnel: string, node: string) => reportOf(node, tunnel)?.underlayAddress;
      const reported = entriesOf(ipipNodes.get(nodeName));
      return { tunnels: tunnels.items(), nodeAddresses, published, reported };
    },
    ready: () => {
      if (!tunnels.synced) return 'ipiptunnels not listed yet';
      if (!ipipNodes.synced) return 'ipipnodes not listed yet';
      if (!nodes.synced) return 'nodes not listed yet';
      return true;
    },
    stop: async () => {
      await Promise.all([tunnels.stop(), ipipNodes.stop(), nodes.stop()]);
    },
  };
}

export function runClusterAgent(o: ClusterAgentOptions): AgentLoop {
  const { client, log, metrics, nodeName } = o;
  const events = new EventRecorder(client, nodeName, log);
  let aggregateFailures = 0;
  let eventsRecorded: Promise<void> = Promise.resolve();

  const aggregateRunner = new CoalescingRunner(() => writeAggregates(), {
    debounceMs: Math.max(o.debounceMs, AGGREGATE_INTERVAL_MS),
  });
  const informers = informerSource(clientSources(client), {
    nodeName,
    log,
    onList: (resource, why) => metrics.recordList(resource, why),
    // The Lease holder's aggregates cover all tunnels.
    onAnyTunnelChange: () => {
      if (elector.isLeader) aggregateRunner.request();
    },
  });
  const { tunnels, ipipNodes, nodes } = informers;
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
      // In the background and a few at a time, one pass's after another's: a pass that
      // programs hundreds of tunnels has as many Events, and all at once they queued the
      // Lease's renewal and the status writes behind them until those timed out.
      const batch = report.events;
      if (batch.length > 0)
        eventsRecorded = eventsRecorded.then(() => eachLimited(batch, EVENT_CONCURRENCY, (e) => events.record(e)));
      const written = report.nodeStatus === undefined ? true : await writeNode(report.nodeStatus);
      // Each pass (the resync's too) gives the Lease holder a look at the aggregates.
      if (elector.isLeader) aggregateRunner.request();
      return written;
    },
  };

  /**
   * Server-side apply of this node's IpipNode, owned by its Node (so it goes when the Node
   * goes). The answer goes into the cache at once: comparing the next report with a cache
   * that has not seen this write's watch event yet would write the same thing again.
   */
  async function writeNode(entries: NodeTunnelStatus[]): Promise<boolean> {
    const uid = nodes.get(nodeName)?.uid;
    try {
      const written = await client.applyIpipNode(
        nodeName,
        nodeFieldManager(nodeName),
        entries,
        readySummaryOf(entries),
        uid === undefined ? undefined : { uid },
      );
      // The first write creates it: taken into the cache too, or the next pass would write it again.
      ipipNodes.offer(written, { created: true });
      log.debug('node status written', { node: nodeName, tunnels: entries.length });
      return true;
    } catch (error) {
      log.warn('node status not written; will retry', {
        node: nodeName,
        error: error instanceof Error ? error.message : String(error),
      });
      return false;
    }
  }

  /** Server-side apply of a tunnel's aggregate; the answer goes into the cache at once, as above. */
  async function writeStatus(tunnel: IpipTunnel, manager: string, status: IpipTunnelStatus): Promise<boolean> {
    const name = tunnel.metadata.name;
    try {
      tunnels.offer(await client.applyTunnelStatus(name, manager, status));
      // Not built unless it is logged: a thousand of these come in the first minute.
      if (log.isDebugEnabled()) log.debug('status written', { tunnel: name, manager, status: JSON.stringify(status) });
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
    if (!elector.isLeader || !tunnels.synced || !ipipNodes.synced) return undefined;
    let failed = false;
    const reportOf = currentReportsIn(ipipNodes);
    const due = (tunnel: IpipTunnel) => {
      const wanted = aggregateStatus(tunnel, reportOf, new Date());
      return sameAggregate(tunnel.status, wanted) ? undefined : wanted;
    };
    const changed = tunnels.items().filter((tunnel) => due(tunnel) !== undefined);
    // Each is computed again when its turn comes: with a thousand to write, the last would
    // otherwise say what the caches said a minute or more before (and be written again).
    // A Lease lost meanwhile stops the run: the new holder writes from then on, and two
    // writers with caches of different ages would write each other's past.
    await eachLimited(changed, WRITE_CONCURRENCY, async ({ metadata: { name } }) => {
      if (!elector.isLeader) return;
      const tunnel = tunnels.get(name);
      const wanted = tunnel === undefined ? undefined : due(tunnel);
      if (tunnel === undefined || wanted === undefined) return;
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
