// Kubernetes Events on IpipTunnels, deduplicated the way client-go's EventCorrelator does:
// the same event (object, type, reason, message, source) seen again is not a new object
// but a count on the first one (`kubectl describe` shows "x5 over 10m"). Events of a
// cluster-scoped object live in namespace "default". Recording never blocks or fails a
// reconcile: a failed write is logged and dropped, as Events are best effort.

import type { IpipTunnel } from '../api/types.ts';
import { eventTime } from '../kube/client.ts';
import type { KubeClient, KubeEvent } from '../kube/client.ts';
import type { Logger } from './log.ts';

export const EVENT_NAMESPACE = 'default';
export const COMPONENT = 'ipip-operator';

export interface TunnelEvent {
  tunnel: IpipTunnel;
  type: 'Normal' | 'Warning';
  /** A specific CamelCase word: Programmed, DriftCorrected, UnderlayInterfaceNotFound, ... */
  reason: string;
  message: string;
}

/** What makes two events "the same" for deduplication (client-go: getEventKey). */
export function eventKey(node: string, e: TunnelEvent): string {
  const m = e.tunnel.metadata;
  return [COMPONENT, node, e.tunnel.apiVersion, e.tunnel.kind, m.name, m.uid ?? '', e.type, e.reason, e.message].join(
    '\u0000',
  );
}

/** client-go keeps 4096 keys; one agent's events are far fewer. */
const MAX_KEYS = 1024;
/** An event not seen for this long starts a new Event object (client-go: 10 minutes of similar events). */
const SERIES_WINDOW_MS = 10 * 60_000;
/** The API server caps messages at 1 KiB for a readable `kubectl describe`. */
const MAX_MESSAGE = 1024;

interface Series {
  name: string;
  count: number;
  lastMs: number;
}

export class EventRecorder {
  private readonly series = new Map<string, Series>();
  private readonly client: Pick<KubeClient, 'createEvent' | 'patchEventSeries'>;
  private readonly node: string;
  private readonly log: Logger;
  private readonly now: () => Date;
  private sequence = 0;

  constructor(
    client: Pick<KubeClient, 'createEvent' | 'patchEventSeries'>,
    node: string,
    log: Logger,
    now: () => Date = () => new Date(),
  ) {
    this.client = client;
    this.node = node;
    this.log = log;
    this.now = now;
  }

  /** Records the event; resolves when written (or when writing failed and was logged). */
  async record(e: TunnelEvent): Promise<void> {
    const key = eventKey(this.node, e);
    const now = this.now();
    const seen = this.series.get(key);
    try {
      if (seen !== undefined && now.getTime() - seen.lastMs < SERIES_WINDOW_MS) {
        seen.count += 1;
        seen.lastMs = now.getTime();
        try {
          await this.client.patchEventSeries(EVENT_NAMESPACE, seen.name, seen.count, now);
          return;
        } catch (error) {
          // Gone (expired after its TTL, or deleted): start a new one below.
          if ((error as { status?: number }).status !== 404) throw error;
        }
      }
      const name = `${e.tunnel.metadata.name}.${(now.getTime() * 1000 + (this.sequence++ % 1000)).toString(16)}`;
      await this.client.createEvent(this.build(name, e, now));
      this.series.delete(key); // re-insert: the Map's order is the LRU order
      this.series.set(key, { name, count: 1, lastMs: now.getTime() });
      if (this.series.size > MAX_KEYS) this.series.delete(this.series.keys().next().value!);
    } catch (error) {
      this.log.warn('event not recorded', {
        tunnel: e.tunnel.metadata.name,
        reason: e.reason,
        error: String((error as Error).message),
      });
    }
  }

  private build(name: string, e: TunnelEvent, now: Date): KubeEvent {
    const m = e.tunnel.metadata;
    return {
      metadata: { name, namespace: EVENT_NAMESPACE },
      involvedObject: {
        apiVersion: e.tunnel.apiVersion,
        kind: e.tunnel.kind,
        name: m.name,
        ...(m.uid === undefined ? {} : { uid: m.uid }),
      },
      type: e.type,
      reason: e.reason,
      message: e.message.length > MAX_MESSAGE ? `${e.message.slice(0, MAX_MESSAGE - 3)}...` : e.message,
      source: { component: COMPONENT, host: this.node },
      reportingComponent: COMPONENT,
      reportingInstance: this.node,
      firstTimestamp: eventTime(now),
      lastTimestamp: eventTime(now),
      count: 1,
    };
  }
}
