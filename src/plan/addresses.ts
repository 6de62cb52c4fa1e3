// Addresses on the agent's links. A link the agent owns is entirely its own, so every IPv4
// address on it that the tunnel does not want is removed; addresses elsewhere are never
// changed. An overlay address that a device not the agent's already holds is a conflict:
// two devices with one address split that address's traffic.

import type { Action } from '../model/action.ts';
import type { DesiredAddress } from '../model/desired.ts';
import type { ObservedAddress } from '../model/kernel.ts';
import { groupBy } from './group.ts';
import type { KindPlanner } from './planner.ts';

/** An observed address with the link it is on. */
export type AddressOnLink = ObservedAddress & { dev: string };

const key = (a: DesiredAddress | AddressOnLink) => `${a.dev} ${a.local}/${a.prefixlen} peer ${a.peer ?? '-'}`;
const shown = (a: DesiredAddress | AddressOnLink) =>
  a.peer === undefined ? `${a.local}/${a.prefixlen}` : `${a.local} peer ${a.peer}`;

function asDesired(a: AddressOnLink): DesiredAddress {
  const { dev, local, prefixlen, peer } = a;
  return peer === undefined ? { dev, local, prefixlen } : { dev, local, prefixlen, peer };
}

export const addressPlanner: KindPlanner<
  DesiredAddress,
  AddressOnLink,
  ReadonlyMap<string, readonly AddressOnLink[]>
> = {
  kind: 'address',
  phase: { delete: 1, create: 5, update: 5 },
  desired: (t) => t.addresses,
  observed: (state) => state.links.flatMap((l) => l.addresses.map((a) => ({ ...a, dev: l.name }))),
  desiredKey: key,
  observedKey: key,
  owner: (o, links) => links(o.dev),
  parentLink: (o) => o.dev,
  index: (observed) => groupBy(observed, (a) => a.local),

  conflict(tunnel, d, byLocal, links) {
    const holder = byLocal.get(d.local)?.find((a) => links(a.dev) === undefined);
    if (holder === undefined) return undefined;
    return {
      tunnel,
      reason: 'AddressTaken',
      field: 'spec.endpoints',
      message: `${d.local} is already an address of ${holder.dev}, which ipip-operator did not create; it is not added a second time`,
    };
  },

  diff(tunnel, d, current): Action[] {
    if (current !== undefined) return [];
    return [
      {
        tool: 'ip',
        kind: 'address',
        verb: 'create',
        tunnel,
        link: d.dev,
        detail: shown(d),
        ops: [{ op: 'address-add', address: d }],
      },
    ];
  },

  remove: ({ object, owner }) => ({
    tool: 'ip',
    kind: 'address',
    verb: 'delete',
    tunnel: owner,
    link: object.dev,
    detail: shown(object),
    ops: [{ op: 'address-del', address: asDesired(object) }],
  }),
};
