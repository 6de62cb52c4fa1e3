// The agent's view of the kernel between two reads: the last read, with every event the
// monitors reported since applied to it, in order. A wake-up by kernel events is first
// decided on it (loop.ts): when the plan on the view is empty, the events were the echoes
// of the agent's own writes or changes no pass would undo, and nothing is read. A plan
// that is not empty is never applied from the view: a full pass reads the kernel first.
// Pure (no I/O): changes in, a KernelState out.

import type { ActionResult } from '../model/action.ts';
import type {
  KernelChange,
  KernelState,
  NftState,
  ObservedAddress,
  ObservedLink,
  ObservedRoute,
} from '../model/kernel.ts';
import { routeKey } from '../plan/routes.ts';

const keyOf = (r: ObservedRoute) => routeKey(r.dst, r.metric);
/** The device a route is indexed under ('' for one without, which no link's going down drops). */
const devOf = (r: ObservedRoute) => r.dev ?? '';
const sameAddress = (a: ObservedAddress, b: ObservedAddress) =>
  a.local === b.local && a.prefixlen === b.prefixlen && a.peer === b.peer;

export class KernelView {
  private readonly links = new Map<number, ObservedLink>();
  /**
   * Each link's index by its name, and each device's route keys: a converge of 1,000 tunnels
   * brings some 5,000 events, and a scan of every link or route for each was quadratic.
   */
  private readonly indexByName = new Map<string, number>();
  private readonly routes = new Map<string, ObservedRoute>();
  private readonly routeKeysByDev = new Map<string, Set<string>>();
  private nft: NftState | undefined;
  private readonly ipv4Forwarding: boolean | undefined;
  /** undefined while the view holds; else why it cannot be trusted (the next wake-up reads the kernel). */
  private distrust: string | undefined;

  constructor(read: KernelState) {
    for (const link of read.links) this.setLink({ ...link, addresses: [...link.addresses] });
    for (const route of read.routes) this.setRoute(keyOf(route), route);
    this.nft = read.nft;
    this.ipv4Forwarding = read.ipv4Forwarding;
  }

  /** true, or why the view is not to be decided on. */
  trusted(): true | string {
    return this.distrust ?? true;
  }

  private byName(name: string): ObservedLink | undefined {
    const index = this.indexByName.get(name);
    return index === undefined ? undefined : this.links.get(index);
  }

  private setLink(link: ObservedLink): void {
    const before = this.links.get(link.index);
    if (before !== undefined && before.name !== link.name && this.indexByName.get(before.name) === link.index)
      this.indexByName.delete(before.name);
    this.links.set(link.index, link);
    this.indexByName.set(link.name, link.index);
  }

  private deleteLink(index: number): void {
    const link = this.links.get(index);
    if (link === undefined) return;
    this.links.delete(index);
    if (this.indexByName.get(link.name) === index) this.indexByName.delete(link.name);
  }

  private setRoute(key: string, route: ObservedRoute): void {
    this.deleteRoute(key);
    this.routes.set(key, route);
    const keys = this.routeKeysByDev.get(devOf(route)) ?? new Set<string>();
    this.routeKeysByDev.set(devOf(route), keys.add(key));
  }

  private deleteRoute(key: string): void {
    const route = this.routes.get(key);
    if (route === undefined) return;
    this.routes.delete(key);
    const keys = this.routeKeysByDev.get(devOf(route));
    keys?.delete(key);
    if (keys?.size === 0) this.routeKeysByDev.delete(devOf(route));
  }

  /** The kernel drops a link's IPv4 routes when it goes down or away, without an event for each. */
  private dropRoutesOn(name: string): void {
    for (const key of [...(this.routeKeysByDev.get(name) ?? [])]) this.deleteRoute(key);
  }

  apply(change: KernelChange): void {
    switch (change.kind) {
      case 'link': {
        const { link } = change;
        const before = this.links.get(link.index);
        const named = this.byName(link.name);
        if (named !== undefined && named.index !== link.index) {
          // A link of that name under another index: its deletion was missed.
          this.deleteLink(named.index);
          this.dropRoutesOn(named.name);
        }
        if (change.deleted) {
          this.deleteLink(link.index);
          this.dropRoutesOn(link.name);
          return;
        }
        if (before !== undefined && before.name !== link.name) {
          for (const key of [...(this.routeKeysByDev.get(before.name) ?? [])])
            this.setRoute(key, { ...this.routes.get(key)!, dev: link.name });
        }
        const now: ObservedLink = { ...link, addresses: before?.addresses ?? [] };
        if (before?.stats !== undefined) now.stats = before.stats;
        this.setLink(now);
        if (!link.up) this.dropRoutesOn(link.name);
        return;
      }
      case 'address': {
        const link = this.byName(change.dev);
        if (link === undefined) {
          this.distrust = `an address event on ${change.dev}, a link the view does not have`;
          return;
        }
        const others = link.addresses.filter((a) => !sameAddress(a, change.address));
        link.addresses = change.deleted ? others : [...others, change.address];
        return;
      }
      case 'route':
        if (change.deleted) this.deleteRoute(keyOf(change.route));
        else this.setRoute(keyOf(change.route), change.route);
        return;
      case 'nft':
        // The agent's own writes are put in by wrote(); anyone else's change is not read from events.
        if (!change.own) this.distrust = "the agent's nftables table was changed by another process";
        return;
      case 'elsewhere':
        return;
      case 'unreadable':
        this.distrust = 'a kernel event the agent could not read';
        return;
    }
  }

  /**
   * What a pass's writes did to the table: nft writes replace it whole, and the monitor
   * reports them only as the agent's own (no content), so the view takes the written
   * table from the actions. A failed write leaves the view not to be trusted.
   */
  wrote(results: readonly ActionResult[]): void {
    for (const { action, error } of results) {
      if (action.tool !== 'nft') continue;
      if (error !== undefined) {
        this.distrust = 'a write of the nftables table failed';
        return;
      }
      this.nft = { available: true, table: action.table.length > 0, rules: [...action.table] };
    }
  }

  /** Whether a link of `links` is gone or down, or a prefix of `prefixes` has no route: a cheap look for sure drift. */
  lacks(links: ReadonlySet<string>, prefixes: ReadonlySet<string>): boolean {
    const up = new Set<string>();
    for (const link of this.links.values()) if (link.up) up.add(link.name);
    for (const name of links) if (!up.has(name)) return true;
    const routed = new Set<string>();
    for (const route of this.routes.values()) routed.add(route.dst);
    for (const prefix of prefixes) if (!routed.has(prefix)) return true;
    return false;
  }

  state(): KernelState {
    const state: KernelState = {
      links: [...this.links.values()].map((l) => ({ ...l, addresses: [...l.addresses] })),
      routes: [...this.routes.values()],
    };
    if (this.nft !== undefined) state.nft = this.nft;
    if (this.ipv4Forwarding !== undefined) state.ipv4Forwarding = this.ipv4Forwarding;
    return state;
  }
}
