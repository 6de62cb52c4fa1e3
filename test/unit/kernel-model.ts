// A model of the few kernel behaviours plan relies on, driven by the rendered `ip` commands.
// It lets unit tests check that plan's output, applied, leaves nothing to do. It is not
// evidence about the kernel: test/kernel proves the same on a real one.

import type { ObservedState } from '../../src/dataplane/model.ts';
import { renderActions } from '../../src/plan/render.ts';
import type { Action } from '../../src/plan/types.ts';

function kv(args: string[], key: string): string | undefined {
  const i = args.indexOf(key);
  return i >= 0 ? args[i + 1] : undefined;
}

export function applyModel(state: ObservedState, actions: readonly Action[]): ObservedState {
  const s: ObservedState = structuredClone(state);
  let nextIndex = Math.max(0, ...s.links.map((l) => l.index)) + 1;
  for (const line of renderActions(actions)) {
    const a = line.split(' ');
    const [obj, verb] = a;
    if (obj === 'link' && verb === 'add') {
      const name = kv(a, 'name')!;
      const ttl = kv(a, 'ttl');
      const link: ObservedState['links'][number] = { index: nextIndex++, name, kind: kv(a, 'type')!, up: false, mtu: Number(kv(a, 'mtu')), addresses: [] };
      const local = kv(a, 'local'); const remote = kv(a, 'remote'); const dev = kv(a, 'dev');
      if (local !== undefined) link.local = local;
      if (remote !== undefined) link.remote = remote;
      if (dev !== undefined) link.underlay = dev;
      if (ttl !== undefined) link.ttl = Number(ttl);
      s.links.push(link);
    } else if (obj === 'link' && verb === 'del') {
      const name = kv(a, 'dev');
      s.links = s.links.filter((l) => l.name !== name);
      s.routes = s.routes.filter((r) => r.dev !== name);
    } else if (obj === 'link' && verb === 'set') {
      const link = s.links.find((l) => l.name === kv(a, 'dev'))!;
      if (kv(a, 'alias') !== undefined) link.alias = kv(a, 'alias')!;
      if (a.includes('up')) link.up = true;
      if (kv(a, 'mtu') !== undefined) link.mtu = Number(kv(a, 'mtu'));
      if (a.includes('type')) {
        link.local = kv(a.slice(a.indexOf('type')), 'local')!;
        link.remote = kv(a, 'remote')!;
        link.ttl = Number(kv(a, 'ttl'));
        const dev = kv(a.slice(a.indexOf('type')), 'dev');
        if (dev !== undefined) link.underlay = dev;
      }
    } else if (obj === 'address') {
      const link = s.links.find((l) => l.name === kv(a, 'dev'))!;
      const [local, len] = a[2]!.split('/');
      const peer = kv(a, 'peer')?.split('/')[0];
      if (verb === 'add') link.addresses.push({ local: local!, prefixlen: Number(len), scope: 0, ...(peer === undefined ? {} : { peer }) });
      else link.addresses = link.addresses.filter((x) => !(x.local === local && x.peer === peer));
    } else if (obj === 'route') {
      const dst = a[2]!;
      const metric = Number(kv(a, 'metric') ?? 0);
      s.routes = s.routes.filter((r) => !(r.dst === dst && r.metric === metric && (verb === 'replace' || r.protocol === 203)));
      if (verb === 'replace') s.routes.push({ dst, dev: kv(a, 'dev')!, protocol: Number(kv(a, 'proto')), metric, scope: 253, type: 1 });
    } else {
      throw new Error(`kernel model: no rule for "${line}"`);
    }
  }
  return s;
}
