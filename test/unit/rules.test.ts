// The agent's nftables rules as resolve and plan decide them: a mesh drops IPIP from
// anyone but its peers (and the remotes of the node's other IPIP devices on the address),
// an endpoint with masquerade source-NATs what the others send; the table is written whole,
// kept tunnels keep their part, the last tunnel's removal deletes it, and a node that
// cannot hold it refuses the tunnels that need it before anything is written.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { IpipTunnel } from '../../src/api/types.ts';
import type { Action, NftAction } from '../../src/model/action.ts';
import type { DesiredRules } from '../../src/model/desired.ts';
import type { KernelState, ObservedLink } from '../../src/model/kernel.ts';
import { NO_TUNNEL } from '../../src/model/ownership.ts';
import type { TunnelResolution } from '../../src/model/problem.ts';
import { outermostPrefixes } from '../../src/net/ipv4.ts';
import { plan } from '../../src/plan/engine.ts';
import { resolve } from '../../src/resolve/resolve.ts';
import { applyModel } from '../harness/kernel-model.ts';
import { meshExample } from '../harness/repo.ts';
import { bareKernel, exampleTunnel } from './builders.ts';

/** node-a's kernel, with an nftables that works and holds no table of ours. */
function nodeA(edit: (k: KernelState) => void = () => {}): KernelState {
  const k = bareKernel();
  k.nft = { available: true, table: false, rules: [] };
  edit(k);
  return k;
}

function resolveOn(kernel: KernelState, tunnels: IpipTunnel[], nodeName = 'node-a'): TunnelResolution[] {
  return resolve({ nodeName, tunnels, kernel, nodeAddresses: new Map() });
}

function rulesOf(kernel: KernelState, tunnels: IpipTunnel[], tunnel: string, nodeName = 'node-a') {
  const r = resolveOn(kernel, tunnels, nodeName).find((x) => x.tunnel === tunnel);
  assert.equal(r?.outcome, 'desired', JSON.stringify(r));
  return r.outcome === 'desired' ? r.desired.rules : undefined;
}

/** node-c's kernel: eth1 has 192.168.40.4. */
function nodeC(): KernelState {
  return nodeA((k) => {
    k.links[2]!.addresses[0]!.local = '192.168.40.4';
  });
}

/** A point-to-point tunnel from node-a to a host that is no mesh peer (192.168.40.96). */
function sideTunnel(mutate: (t: IpipTunnel) => void = () => {}): IpipTunnel {
  return exampleTunnel((t) => {
    t.metadata.name = 'side';
    t.spec.linkName = 'ipipside';
    t.spec.routes = [];
    t.spec.endpoints[1]!.underlay = { address: '192.168.40.96' };
    t.spec.endpoints.forEach((e, i) => {
      e.overlayAddress = `172.0.9.${2 + i}`;
      delete e.networks;
    });
    mutate(t);
  });
}

const nftActions = (actions: readonly Action[]) => actions.filter((a): a is NftAction => a.tool === 'nft');

function foreignIpip(name: string, local: string | undefined, remote: string | undefined): ObservedLink {
  return {
    index: 40,
    name,
    kind: 'ipip',
    group: 0,
    up: true,
    mtu: 1480,
    tunnel: { mode: 'ipip', local, remote, ttl: 64, underlayDevice: undefined },
    addresses: [],
  };
}

/** The kernel after the plan of these tunnels; the plan of it again is empty. */
function programmed(tunnels: IpipTunnel[], kernel = nodeA()): KernelState {
  const first = plan(resolveOn(kernel, tunnels), kernel);
  assert.deepEqual(first.conflicts, []);
  const after = applyModel(kernel, first.actions);
  assert.deepEqual(plan(resolveOn(after, tunnels), after).actions, [], 'a second plan is empty');
  return after;
}

describe('rules: what each tunnel asks for', () => {
  test('a mesh drops IPIP to its local address from anyone but its peers, by default', () => {
    assert.deepEqual(rulesOf(nodeA(), [meshExample()], 'mesh'), {
      tunnel: 'mesh',
      peerFilter: { local: '192.168.40.2', allowed: ['192.168.40.3', '192.168.40.4'] },
    });
  });

  test('dropForeignIpip: false turns the filter off; a point-to-point tunnel never has one (the kernel takes only its remote)', () => {
    const off = meshExample((t) => {
      t.spec.dropForeignIpip = false;
      t.spec.endpoints[2]!.masquerade = false;
    });
    assert.equal(rulesOf(nodeC(), [off], 'mesh', 'node-c'), undefined);
    const p2p = exampleTunnel((t) => {
      t.spec.dropForeignIpip = true;
    });
    assert.equal(rulesOf(nodeA(), [p2p], 'lab'), undefined);
  });

  test('masquerade on node-c of the mesh: from the other endpoints, leaving by anything but the mesh link', () => {
    const rules = rulesOf(nodeC(), [meshExample()], 'mesh', 'node-c');
    assert.deepEqual(rules?.masquerade, { link: 'ipipmesh', sources: ['172.0.1.2/32', '172.0.1.3/32'] });
    assert.deepEqual(rules?.peerFilter, { local: '192.168.40.4', allowed: ['192.168.40.2', '192.168.40.3'] });
  });

  test("masquerade on a point-to-point endpoint: the far end's overlay address and its networks, none inside another", () => {
    const t = exampleTunnel((x) => {
      x.spec.endpoints[1]!.masquerade = true;
      x.spec.endpoints[0]!.networks = ['10.20.0.0/16', '10.20.5.0/24', '10.21.0.0/16'];
    });
    // node-b's view: node-a is the far end.
    const k = nodeA((n) => {
      n.links[2]!.addresses[0]!.local = '192.168.40.3';
    });
    assert.deepEqual(rulesOf(k, [t], 'lab', 'node-b'), {
      tunnel: 'lab',
      masquerade: { link: 'ipiptun', sources: ['10.20.0.0/16', '10.21.0.0/16', '172.0.0.2/32'] },
    });
  });

  test("the filter allows the remotes of the node's other IPIP devices that take packets to the same address, foreign ones included", () => {
    const k = nodeA((n) => {
      n.links.push(
        foreignIpip('foreign1', '192.168.40.2', '192.168.40.99'), // same local: allowed
        foreignIpip('foreign2', undefined, '192.168.40.98'), // any local: takes packets to every address, allowed
        foreignIpip('foreign3', '10.0.0.1', '192.168.40.97'), // another local: not its business
      );
    });
    const rules = rulesOf(k, [meshExample(), sideTunnel()], 'mesh');
    assert.deepEqual(rules?.peerFilter?.allowed, [
      '192.168.40.3',
      '192.168.40.4',
      '192.168.40.96',
      '192.168.40.98',
      '192.168.40.99',
    ]);
  });

  test('a peer not known yet is still allowed from the address its kept route goes to; an unknown new one is not', () => {
    const cluster = (t: IpipTunnel) => {
      t.spec.endpoints[1]!.underlay = { interface: 'eth1' };
      t.spec.endpoints[2]!.underlay = { interface: 'eth1' };
    };
    const known = meshExample(cluster);
    const kernel = nodeA();
    const published = (_t: string, node: string) => ({ 'node-b': '192.168.40.3', 'node-c': '192.168.40.4' })[node];
    const first = resolve({ nodeName: 'node-a', tunnels: [known], kernel, nodeAddresses: new Map(), published });
    const after = applyModel(kernel, plan(first, kernel).actions);
    // node-c's report is gone now (its agent restarted): its routes stay, and so does its IPIP.
    const onlyB = (_t: string, node: string) => (node === 'node-b' ? '192.168.40.3' : undefined);
    const r = resolve({
      nodeName: 'node-a',
      tunnels: [known],
      kernel: after,
      nodeAddresses: new Map(),
      published: onlyB,
    });
    const mesh = r.find((x) => x.tunnel === 'mesh');
    assert.equal(mesh?.outcome, 'desired');
    if (mesh?.outcome !== 'desired') return;
    assert.deepEqual(mesh.desired.rules?.peerFilter?.allowed, ['192.168.40.3', '192.168.40.4']);
    const fresh = resolve({ nodeName: 'node-a', tunnels: [known], kernel, nodeAddresses: new Map(), published: onlyB });
    const m2 = fresh.find((x) => x.tunnel === 'mesh');
    assert.ok(m2?.outcome === 'desired');
    assert.deepEqual(m2.desired.rules?.peerFilter?.allowed, ['192.168.40.3']);
  });

  test('masquerade on a node that does not forward: programmed, and ForwardingDisabled says why nothing gets through', () => {
    const t = exampleTunnel((x) => {
      x.spec.endpoints[0]!.masquerade = true;
      delete x.spec.endpoints[0]!.networks;
    });
    const r = resolveOn(
      nodeA((k) => {
        k.ipv4Forwarding = false;
      }),
      [t],
    )[0]!;
    assert.equal(r.outcome, 'desired');
    if (r.outcome !== 'desired') return;
    assert.ok(r.desired.rules?.masquerade !== undefined);
    assert.deepEqual(
      r.caveats?.map((c) => [c.reason, c.field]),
      [['ForwardingDisabled', 'spec.endpoints[0].masquerade']],
    );
    assert.match(r.caveats![0]!.message, /masquerades for the other endpoints/);
  });
});

describe('rules: how the table is planned', () => {
  test('a new mesh: its rules are written before its link is made, as one table', () => {
    const { actions } = plan(resolveOn(nodeA(), [meshExample()]), nodeA());
    assert.equal(actions[0]!.tool, 'nft', 'the filter goes in first');
    const [rules] = nftActions(actions);
    assert.equal(nftActions(actions).length, 1);
    assert.equal(rules!.verb, 'create');
    assert.deepEqual(
      rules!.table.map((r) => r.tunnel),
      ['mesh'],
    );
  });

  test('the same rules in another order are no change; a new peer is one update that carries the whole table and the counters', () => {
    const other = sideTunnel((t) => {
      t.spec.endpoints[0]!.masquerade = true;
    });
    const kernel = programmed([meshExample(), other]);
    assert.ok(kernel.nft?.available === true);
    // Sorted differently by the parser, with counts: still the same rules.
    const mesh = kernel.nft.rules.find((r) => r.tunnel === 'mesh')!;
    mesh.peerFilter = { local: mesh.peerFilter!.local, allowed: [...mesh.peerFilter!.allowed].reverse() };
    mesh.dropped = { packets: 5, bytes: 500 };
    kernel.nft.rules.find((r) => r.tunnel === 'side')!.masqueraded = { packets: 2, bytes: 120 };
    assert.deepEqual(nftActions(plan(resolveOn(kernel, [meshExample(), other]), kernel).actions), []);

    const grown = meshExample((t) => {
      t.spec.endpoints.push({ nodeName: 'node-d', underlay: { address: '192.168.40.5' }, overlayAddress: '172.0.1.5' });
    });
    const actions = nftActions(plan(resolveOn(kernel, [grown, other]), kernel).actions);
    assert.deepEqual(
      actions.map((a) => [a.tunnel, a.verb]),
      [['mesh', 'update']],
    );
    assert.deepEqual(
      actions[0]!.table.map((r) => [r.tunnel, r.dropped?.packets, r.masqueraded?.packets]),
      [
        ['mesh', 5, undefined],
        ['side', undefined, 2],
      ],
    );
    // The side tunnel's remote, from the same local address, is allowed too.
    assert.deepEqual(actions[0]!.rules?.peerFilter?.allowed, [
      '192.168.40.3',
      '192.168.40.4',
      '192.168.40.5',
      '192.168.40.96',
    ]);
  });

  test("a tunnel in error keeps its part of the table as it is; a removed tunnel's part goes; the last one deletes the table", () => {
    const other = sideTunnel((t) => {
      t.spec.endpoints[0]!.masquerade = true;
    });
    const kernel = programmed([meshExample(), other]);
    // side now has a bad spec (kept as it is) and the mesh is deleted.
    const broken = sideTunnel((t) => {
      t.spec.endpoints[0]!.masquerade = true;
      t.spec.ttl = 300;
    });
    const { actions } = plan(resolveOn(kernel, [broken]), kernel);
    const nft = nftActions(actions);
    assert.deepEqual(
      nft.map((a) => [a.tunnel, a.verb]),
      [['mesh', 'delete']],
    );
    assert.deepEqual(
      nft[0]!.table.map((r) => r.tunnel),
      ['side'],
    );
    assert.equal(actions.at(-1)!.tool, 'nft', 'the filter goes after the link it guarded');
    const after = applyModel(kernel, actions);
    const last = nftActions(plan(resolveOn(after, []), after).actions);
    assert.deepEqual(
      last.map((a) => [a.tunnel, a.verb, a.table.length]),
      [['side', 'delete', 0]],
    );
    assert.deepEqual(applyModel(after, plan(resolveOn(after, []), after).actions).nft, {
      available: true,
      table: false,
      rules: [],
    });
  });

  test('a table of ours that holds no tunnel (emptied by hand) is deleted when nothing needs it', () => {
    const kernel = nodeA((k) => {
      k.nft = { available: true, table: true, rules: [{ tunnel: NO_TUNNEL }] };
    });
    const nft = nftActions(plan(resolveOn(kernel, [exampleTunnel()]), kernel).actions);
    assert.deepEqual(
      nft.map((a) => [a.verb, a.table.length]),
      [['delete', 0]],
    );
  });

  test('a rule flushed by hand (its set left) is written again', () => {
    const kernel = programmed([meshExample()]);
    assert.ok(kernel.nft?.available === true);
    kernel.nft.rules = [{ tunnel: 'mesh' }];
    const nft = nftActions(plan(resolveOn(kernel, [meshExample()]), kernel).actions);
    assert.deepEqual(
      nft.map((a) => [a.tunnel, a.verb]),
      [['mesh', 'update']],
    );
  });

  test('a node without nftables refuses the tunnels that need rules, with no action at all; the others go on', () => {
    const kernel = nodeA((k) => {
      k.nft = { available: false, why: 'nft: Operation not supported (no nf_tables for the ip family)' };
    });
    const tunnels = [meshExample(), sideTunnel()];
    const { actions, conflicts } = plan(resolveOn(kernel, tunnels), kernel);
    assert.deepEqual(
      conflicts.map((c) => [c.tunnel, c.reason]),
      [['mesh', 'NftablesUnavailable']],
    );
    assert.match(conflicts[0]!.message, /Operation not supported/);
    assert.ok(actions.length > 0, 'the point-to-point tunnel is programmed');
    assert.deepEqual([...new Set(actions.map((a) => a.tunnel))], ['side']);
  });
});

describe('outermostPrefixes', () => {
  test('keeps the prefixes no other holds, deduplicated, by address', () => {
    assert.deepEqual(outermostPrefixes(['10.20.5.0/24', '172.0.0.2/32', '10.20.0.0/16', '10.20.0.0/16']), [
      '10.20.0.0/16',
      '172.0.0.2/32',
    ]);
    assert.deepEqual(outermostPrefixes(['10.0.0.0/8', '10.1.0.0/16', '10.2.0.0/16', '11.0.0.0/8']), [
      '10.0.0.0/8',
      '11.0.0.0/8',
    ]);
  });
});

// Types used only to keep the tests honest about the model's shape.
export type { DesiredRules };
