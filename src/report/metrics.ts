// The agent's Prometheus metrics. One AgentMetrics owns its own Registry (not prom-client's
// global one), so tests and several agents in one process do not share series.
// Names carry the `ipip_operator_` prefix; Node's default process metrics keep their
// standard `process_*` / `nodejs_*` names, which existing dashboards expect.

import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { CommandObserver } from '../dataplane/dataplane.ts';
import type { ActionResult } from '../model/action.ts';
import { OBJECT_KINDS, VERBS } from '../model/action.ts';
import type { LinkStats } from '../model/kernel.ts';

const PREFIX = 'ipip_operator_';

/** From 1 ms (an `ip` read) to the 30 s `ip` timeout. */
const DURATION_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** `reader`: ip's and nft's reads go to a process of each kept running (dataplane/kept-reader.ts), counted when it ends. */
const COMMAND_PURPOSES = ['observe', 'apply', 'monitor', 'reader'] as const;
const RESULTS = ['success', 'error'] as const;
const result = (ok: boolean) => (ok ? 'success' : 'error');
/** As controller-runtime counts them: requeue is a pass that changed what it could but left a tunnel waiting or refused. */
export const RECONCILE_RESULTS = ['success', 'error', 'requeue'] as const;
/** Kernel monitor events: they concern our links or routes (a reconcile), or not. */
const KERNEL_EVENT_OUTCOMES = ['reconcile', 'ignored'] as const;
const KERNEL_EVENT_CHECK_RESULTS = ['in_sync', 'reconcile'] as const;
export type KernelEventCheckResult = (typeof KERNEL_EVENT_CHECK_RESULTS)[number];
export type ReconcileResult = (typeof RECONCILE_RESULTS)[number];

/** One tunnel link of this node as the metrics show it. */
export interface TunnelMetrics {
  tunnel: string;
  link: string;
  mode: string;
  local: string;
  remote: string;
  up: boolean;
  /** The link's kernel counters; without them the tunnel has no counter series. */
  stats?: LinkStats | undefined;
  /** Packets its peer filter dropped (nftables' counter); absent: the tunnel has no filter on this node. */
  foreignIpipDropped?: number | undefined;
  /** Connections its masquerade rule translated (a nat rule sees each connection's first packet); absent: none. */
  masqueraded?: number | undefined;
}

/** Metric name (after the prefix) and help of each kernel counter, by its LinkStats field. */
const KERNEL_COUNTERS: ReadonlyArray<[keyof LinkStats, string, string]> = [
  [
    'rxBytes',
    'tunnel_receive_bytes_total',
    'Bytes received on the tunnel link (inner packets), as counted by the kernel.',
  ],
  [
    'txBytes',
    'tunnel_transmit_bytes_total',
    'Bytes transmitted on the tunnel link (inner packets), as counted by the kernel.',
  ],
  ['rxPackets', 'tunnel_receive_packets_total', 'Packets received on the tunnel link, as counted by the kernel.'],
  ['txPackets', 'tunnel_transmit_packets_total', 'Packets transmitted on the tunnel link, as counted by the kernel.'],
  ['rxErrors', 'tunnel_receive_errors_total', 'Receive errors on the tunnel link, as counted by the kernel.'],
  ['txErrors', 'tunnel_transmit_errors_total', 'Transmit errors on the tunnel link, as counted by the kernel.'],
  ['rxDropped', 'tunnel_receive_drops_total', 'Received packets dropped on the tunnel link, as counted by the kernel.'],
  [
    'txDropped',
    'tunnel_transmit_drops_total',
    'Packets dropped before transmission on the tunnel link, as counted by the kernel.',
  ],
];

/**
 * prom-client's default metrics include gauges named nodejs_active_{handles,requests,resources}_total,
 * which `promtool check metrics` rejects (a gauge must not end in _total). Each has a twin
 * without the suffix holding the same value, so dropping them loses nothing and lets the
 * whole exposition pass promtool.
 */
const MISNAMED_DEFAULTS = /^(# (HELP|TYPE) )?nodejs_active_(handles|requests|resources)_total[ {]/;

function withoutMisnamedDefaults(exposition: string): string {
  return exposition
    .split('\n')
    .filter((line) => !MISNAMED_DEFAULTS.test(line))
    .join('\n');
}

export class AgentMetrics {
  readonly registry = new Registry();

  private readonly reconciles = new Counter({
    name: `${PREFIX}reconcile_total`,
    help: 'Reconcile passes, by result.',
    labelNames: ['result'],
    registers: [this.registry],
  });
  private readonly kernelEvents = new Counter({
    name: `${PREFIX}kernel_events_total`,
    help:
      'Kernel events seen by the monitor (links, addresses, routes), by outcome: reconcile (they concern ' +
      "our links or routes) or ignored (routes of others, e.g. a BGP daemon's).",
    labelNames: ['outcome'],
    registers: [this.registry],
  });
  private readonly kernelEventChecks = new Counter({
    name: `${PREFIX}kernel_event_checks_total`,
    help:
      'Wake-ups by kernel events alone, decided on the view (the last read and the events since), by result: ' +
      "in_sync (the agent's own writes' echoes, or nothing a pass would change: nothing read) or reconcile (a full pass ran).",
    labelNames: ['result'],
    registers: [this.registry],
  });
  private readonly reconcileDuration = new Histogram({
    name: `${PREFIX}reconcile_duration_seconds`,
    help: 'How long a reconcile pass took: observe, plan, apply.',
    buckets: DURATION_BUCKETS,
    registers: [this.registry],
  });
  private readonly dataplaneChanges = new Counter({
    name: `${PREFIX}dataplane_changes_total`,
    help: 'Kernel objects the agent changed successfully, by object and action.',
    labelNames: ['object', 'action'],
    registers: [this.registry],
  });
  private readonly driftCorrections = new Counter({
    name: `${PREFIX}drift_corrections_total`,
    help: 'Changes made to undo kernel state that drifted from the wanted state after it had been reached.',
    registers: [this.registry],
  });
  private readonly tunnelUp = new Gauge({
    name: `${PREFIX}tunnel_up`,
    help: '1 when the tunnel link is administratively up, else 0.',
    labelNames: ['tunnel', 'link'],
    registers: [this.registry],
  });
  private readonly tunnelInfo = new Gauge({
    name: `${PREFIX}tunnel_info`,
    help: 'Always 1; labels describe the tunnel link on this node.',
    labelNames: ['tunnel', 'link', 'mode', 'local', 'remote'],
    registers: [this.registry],
  });
  // Counters whose value is the kernel's own absolute count, replaced on every setTunnels;
  // a link that is recreated starts again from 0, which Prometheus reads as a counter reset.
  private readonly kernelCounters = KERNEL_COUNTERS.map(([field, name, help]) => ({
    field,
    counter: new Counter({
      name: `${PREFIX}${name}`,
      help,
      labelNames: ['tunnel', 'link'],
      registers: [this.registry],
    }),
  }));
  // The same, from the rules' counters in the agent's nftables table (which a rewrite of
  // the table carries over).
  private readonly foreignIpipDropped = new Counter({
    name: `${PREFIX}foreign_ipip_dropped_packets_total`,
    help: "IPIP packets to a mesh's underlay address from a host that is not a peer, dropped by the agent's nftables rule.",
    labelNames: ['tunnel', 'link'],
    registers: [this.registry],
  });
  private readonly masqueraded = new Counter({
    name: `${PREFIX}masqueraded_connections_total`,
    help: "Connections from the tunnel's other endpoints source-NATed on this node (the masquerade rule sees each one's first packet).",
    labelNames: ['tunnel', 'link'],
    registers: [this.registry],
  });
  private readonly nftCommands = new Counter({
    name: `${PREFIX}nft_commands_total`,
    help: '`nft` processes run, by purpose and result.',
    labelNames: ['purpose', 'result'],
    registers: [this.registry],
  });
  private readonly nftCommandDuration = new Histogram({
    name: `${PREFIX}nft_command_duration_seconds`,
    help: 'How long an `nft` process took, by purpose.',
    labelNames: ['purpose'],
    buckets: DURATION_BUCKETS,
    registers: [this.registry],
  });
  private readonly ipCommands = new Counter({
    name: `${PREFIX}ip_commands_total`,
    help:
      '`ip` commands run, by purpose and result: a write is one `ip -batch` process, a read one request to the ' +
      'reader process kept running; the reader and the monitor are counted when their process ends.',
    labelNames: ['purpose', 'result'],
    registers: [this.registry],
  });
  private readonly ipCommandDuration = new Histogram({
    name: `${PREFIX}ip_command_duration_seconds`,
    help: 'How long an `ip` command took, by purpose (for the reader and the monitor: how long the process ran).',
    labelNames: ['purpose'],
    buckets: DURATION_BUCKETS,
    registers: [this.registry],
  });
  private readonly lists = new Counter({
    name: `${PREFIX}watch_lists_total`,
    help: 'Full lists of a watched resource, by why: start, expired (410), error (reconnects failed), periodic.',
    labelNames: ['resource', 'reason'],
    registers: [this.registry],
  });
  private readonly leader = new Gauge({
    name: `${PREFIX}status_leader`,
    help: "1 while this agent holds the Lease and writes the tunnels' aggregate status, else 0.",
    registers: [this.registry],
  });
  private readonly apiRequests = new Counter({
    name: `${PREFIX}apiserver_requests_total`,
    help: 'Requests to the Kubernetes API server, by verb and result.',
    labelNames: ['verb', 'result'],
    registers: [this.registry],
  });

  constructor() {
    // Series that exist from the start, at 0, so rate() and absent() work before the first
    // event rather than seeing the series appear mid-way.
    for (const r of RECONCILE_RESULTS) this.reconciles.inc({ result: r }, 0);
    for (const outcome of KERNEL_EVENT_OUTCOMES) this.kernelEvents.inc({ outcome }, 0);
    for (const result of KERNEL_EVENT_CHECK_RESULTS) this.kernelEventChecks.inc({ result }, 0);
    for (const object of OBJECT_KINDS) for (const action of VERBS) this.dataplaneChanges.inc({ object, action }, 0);
    for (const purpose of COMMAND_PURPOSES) for (const r of RESULTS) this.ipCommands.inc({ purpose, result: r }, 0);
    for (const purpose of COMMAND_PURPOSES) for (const r of RESULTS) this.nftCommands.inc({ purpose, result: r }, 0);
    collectDefaultMetrics({ register: this.registry });
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** The exposition text for a scrape. */
  async metrics(): Promise<string> {
    return withoutMisnamedDefaults(await this.registry.metrics());
  }

  recordReconcile(outcome: ReconcileResult, seconds: number): void {
    this.reconciles.inc({ result: outcome });
    this.reconcileDuration.observe(seconds);
  }

  /** Counts the actions that succeeded; failed ones changed nothing to count. */
  recordChanges(results: readonly ActionResult[]): void {
    for (const r of results) {
      if (r.error === undefined) this.dataplaneChanges.inc({ object: r.action.kind, action: r.action.verb });
    }
  }

  recordKernelEvent(concernsUs: boolean): void {
    const outcome: (typeof KERNEL_EVENT_OUTCOMES)[number] = concernsUs ? 'reconcile' : 'ignored';
    this.kernelEvents.inc({ outcome });
  }

  recordKernelEventCheck(result: KernelEventCheckResult): void {
    this.kernelEventChecks.inc({ result });
  }

  recordList(resource: string, reason: string): void {
    this.lists.inc({ resource, reason });
  }

  setLeader(leader: boolean): void {
    this.leader.set(leader ? 1 : 0);
  }

  recordDriftCorrections(count: number): void {
    this.driftCorrections.inc(count);
  }

  /** For the drivers' `onCommand`; an arrow function, so it can be passed as it is. */
  readonly commandObserver: CommandObserver = (tool, purpose, seconds, ok) => {
    const [commands, duration] =
      tool === 'ip' ? [this.ipCommands, this.ipCommandDuration] : [this.nftCommands, this.nftCommandDuration];
    commands.inc({ purpose, result: result(ok) });
    duration.observe({ purpose }, seconds);
  };

  /** For the cluster client's `onRequest`; an arrow function, so it can be passed as it is. */
  readonly recordApiRequest = (verb: string, ok: boolean): void => {
    this.apiRequests.inc({ verb, result: result(ok) });
  };

  /**
   * Replaces the tunnels shown: a tunnel missing from `tunnels` loses all its series. Each
   * tunnel link should appear once (tunnel and link name one set of series).
   */
  setTunnels(tunnels: TunnelMetrics[]): void {
    this.tunnelUp.reset();
    this.tunnelInfo.reset();
    for (const { counter } of this.kernelCounters) counter.reset();
    this.foreignIpipDropped.reset();
    this.masqueraded.reset();
    for (const t of tunnels) {
      const labels = { tunnel: t.tunnel, link: t.link };
      this.tunnelUp.set(labels, t.up ? 1 : 0);
      this.tunnelInfo.set({ ...labels, mode: t.mode, local: t.local, remote: t.remote }, 1);
      if (t.foreignIpipDropped !== undefined) this.foreignIpipDropped.inc(labels, t.foreignIpipDropped);
      if (t.masqueraded !== undefined) this.masqueraded.inc(labels, t.masqueraded);
      if (t.stats === undefined) continue;
      for (const { field, counter } of this.kernelCounters) counter.inc(labels, t.stats[field]);
    }
  }
}
