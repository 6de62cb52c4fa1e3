// Leader election with a coordination.k8s.io Lease, as client-go's leaderelection does it:
// create the Lease, or renew it while we hold it, or take it over once its holder has not
// renewed it for leaseDurationSeconds (measured on our own clock from when we last saw it
// change, so clocks need not agree). Writes carry the resourceVersion read, so two agents
// racing for it cannot both win. On stop the Lease is released, so another agent takes
// over at once rather than after the lease duration.
//
// Every agent of a DaemonSet is a candidate; non-leaders only read the Lease every
// `retryMs`, which is what keeps this cheap on a large cluster.

import { ApiError, microTime } from '../kube/client.ts';
import type { Lease } from '../kube/client.ts';
import type { KubeClient } from '../kube/client.ts';
import type { Logger } from '../report/log.ts';

/** The Lease whose holder writes every tunnel's aggregate status. */
export const LEASE_NAME = 'ipip-operator-status';

export interface LeaseOptions {
  namespace: string;
  name: string;
  identity: string;
  leaseSeconds?: number;
  /** How often the holder renews. */
  renewMs?: number;
  /** How often a candidate looks whether the Lease is free. */
  retryMs?: number;
  log: Logger;
  onChange: (leader: boolean) => void;
}

export class LeaseElector {
  private readonly client: Pick<KubeClient, 'getLease' | 'createLease' | 'replaceLease'>;
  private readonly o: Required<Omit<LeaseOptions, 'log' | 'onChange'>> & Pick<LeaseOptions, 'log' | 'onChange'>;
  private leader = false;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private running: Promise<void> | undefined;
  /** The holder and renewTime we last saw, and when (our clock). */
  private observed: { record: string; atMs: number } | undefined;
  private lastRenewMs = 0;

  constructor(client: Pick<KubeClient, 'getLease' | 'createLease' | 'replaceLease'>, options: LeaseOptions) {
    this.client = client;
    this.o = { leaseSeconds: 30, renewMs: 10_000, retryMs: 30_000, ...options };
  }

  get isLeader(): boolean {
    return this.leader;
  }

  start(): void {
    this.schedule(0);
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.running = this.tick().finally(() => {
        this.running = undefined;
        this.schedule(this.leader ? this.o.renewMs : this.o.retryMs);
      });
    }, ms);
  }

  private setLeader(leader: boolean, why: string): void {
    if (leader === this.leader) return;
    this.leader = leader;
    this.o.log.info(leader ? 'became the status leader' : 'no longer the status leader', {
      lease: `${this.o.namespace}/${this.o.name}`,
      why,
    });
    this.o.onChange(leader);
  }

  private async tick(): Promise<void> {
    const now = new Date();
    try {
      const lease = await this.client.getLease(this.o.namespace, this.o.name);
      if (lease === undefined) {
        await this.client.createLease(this.record(undefined, now, true));
        this.lastRenewMs = now.getTime();
        this.setLeader(true, 'created the lease');
        return;
      }
      const holder = lease.spec?.holderIdentity ?? '';
      const record = `${holder}@${lease.spec?.renewTime ?? ''}`;
      if (this.observed?.record !== record) this.observed = { record, atMs: now.getTime() };
      const durationMs = (lease.spec?.leaseDurationSeconds ?? this.o.leaseSeconds) * 1000;
      const expired = holder === '' || now.getTime() > this.observed.atMs + durationMs;
      if (holder !== this.o.identity && !expired) {
        this.setLeader(false, `held by ${holder}`);
        return;
      }
      await this.client.replaceLease(this.record(lease, now, holder !== this.o.identity));
      this.lastRenewMs = now.getTime();
      this.setLeader(true, holder === this.o.identity ? 'renewed' : `took over from ${holder || 'nobody'}`);
    } catch (error) {
      // 409: someone else wrote it first. Anything else: we could not renew. Either way,
      // a leader that has not renewed within the lease duration must stop acting as one.
      const conflict = error instanceof ApiError && error.status === 409;
      if (!conflict)
        this.o.log.warn('lease not renewed', {
          lease: `${this.o.namespace}/${this.o.name}`,
          error: String((error as Error).message),
        });
      if (conflict || now.getTime() - this.lastRenewMs > this.o.leaseSeconds * 1000) {
        this.setLeader(false, conflict ? 'another agent took the lease' : 'could not renew the lease in time');
      }
    }
  }

  /** The Lease as we want it: renewed by us, or taken over (acquireTime set, transitions counted). */
  private record(current: Lease | undefined, now: Date, acquiring: boolean): Lease {
    const spec = current?.spec ?? {};
    return {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: { ...(current?.metadata ?? {}), name: this.o.name, namespace: this.o.namespace },
      spec: {
        holderIdentity: this.o.identity,
        leaseDurationSeconds: this.o.leaseSeconds,
        acquireTime: acquiring ? microTime(now) : (spec.acquireTime ?? microTime(now)),
        renewTime: microTime(now),
        leaseTransitions: (spec.leaseTransitions ?? 0) + (acquiring && current !== undefined ? 1 : 0),
      },
    };
  }

  /** Stops; a leader releases the Lease (holder cleared) so another agent takes over at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    await this.running;
    if (!this.leader) return;
    try {
      const lease = await this.client.getLease(this.o.namespace, this.o.name);
      if (lease?.spec?.holderIdentity === this.o.identity) {
        await this.client.replaceLease({
          ...lease,
          spec: { ...lease.spec, holderIdentity: '', leaseDurationSeconds: 1 },
        });
      }
    } catch (error) {
      this.o.log.warn('lease not released', { error: String((error as Error).message) });
    }
    this.setLeader(false, 'stopping');
  }
}
