// What a mesh of N endpoints costs the API side, reported in bench/RESULTS.md:
//   node bench/mesh.ts [N ...]        (default: 50 100 200)
// A real kube-apiserver and etcd (test/harness/apiserver.ts) with the CRDs and the chart's
// RBAC; N agents in this one process, each the real cluster agent (runClusterAgent: its
// own client, informers, Lease candidate, report sink) as the chart's ServiceAccount, each
// on a recording dataplane (the kernel model of test/harness/) standing in for its node.
// One IpipTunnel of N endpoints whose underlays name only an interface, so every agent
// must learn every peer's address from the peer's IpipNode. Reported, per N: the time from
// `kubectl apply` to READY N/N, the status writes (IpipNode applies, aggregate applies),
// and the bytes each agent received from its watches while the mesh converged and during
// the idle minute after, as the API server counts them (apiserver_watch_events_sizes: the
// bytes of every event sent to every watcher, by resource; divided by N, since every agent
// holds one watch per resource).

import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runClusterAgent } from '../src/controller/cluster.ts';
import type { AgentLoop } from '../src/controller/loop.ts';
import { KubeClient } from '../src/kube/client.ts';
import type { KernelState } from '../src/model/kernel.ts';
import { createLogger } from '../src/report/log.ts';
import { AgentMetrics } from '../src/report/metrics.ts';
import { kubeconfigYaml, kubectlOk, startApiServer } from '../test/harness/apiserver.ts';
import { serverMetrics } from './apiserver-metrics.ts';
import { RecordingDataplane } from '../test/harness/recording-dataplane.ts';
import { REPO } from '../test/harness/repo.ts';
import { eventually } from '../test/harness/support.ts';
import { bareKernel } from '../test/unit/builders.ts';

const sizes = process.argv.slice(2).map(Number);
const NS = sizes.length > 0 ? sizes : [50, 100, 200];
const IDLE_MS = 60_000;
const log = createLogger({ format: 'json', level: 'error' });

/** Node i's underlay: eth1 10.200.(i/250).(i%250+1)/16. */
const underlay = (i: number) => `10.200.${Math.floor(i / 250)}.${(i % 250) + 1}`;

/** node-a's kernel of the unit tests, with this node's underlay on eth1, forwarding on. */
function kernelOf(i: number): KernelState {
  const k = bareKernel();
  k.links.find((l) => l.name === 'eth1')!.addresses = [{ local: underlay(i), prefixlen: 16, scope: 0 }];
  k.routes = [{ dst: '10.200.0.0/16', dev: 'eth1', protocol: 2, metric: 0, scope: 253, type: 1 }];
  return { ...k, ipv4Forwarding: true };
}

const delta = (a: Map<string, number>, b: Map<string, number>, key: string) => (b.get(key) ?? 0) - (a.get(key) ?? 0);
const kib = (bytes: number) => (bytes / 1024).toFixed(1);

const say = (s: string) => process.stdout.write(`${s}\n`);

say(
  '| endpoints | apply -> READY N/N (s) | IpipNode applies | aggregate applies ' +
    '| KiB received per agent while converging: IpipNodes / IpipTunnels / total | per endpoint (KiB) ' +
    '| idle minute: writes / KiB received per agent |',
);
say('|---:|---:|---:|---:|---|---:|---|');

for (const n of NS) {
  const api = await startApiServer();
  const agents: AgentLoop[] = [];
  try {
    const kubectl = (args: string[], input?: string) => kubectlOk(api, args, input, 300_000);
    await kubectl(['apply', '-f', join(REPO, 'crds')]);
    await kubectl(['wait', '--for=condition=Established', 'crd', '--all', '--timeout=60s']);
    await kubectl(['apply', '-f', join(REPO, 'deploy/manifests/ipip-operator.yaml')]);
    const token = (await kubectl(['create', 'token', 'ipip-operator', '-n', 'ipip-operator', '--duration=2h'])).trim();
    const kubeconfig = join(api.dir, 'agent.kubeconfig');
    writeFileSync(kubeconfig, kubeconfigYaml(api.server, readFileSync(api.caFile), token, 'agent'));
    const names = Array.from({ length: n }, (_, i) => `mesh-${i}`);
    await kubectl(
      ['apply', '-f', '-'],
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'List',
        items: names.map((name) => ({ apiVersion: 'v1', kind: 'Node', metadata: { name } })),
      }),
    );
    const dataplanes = names.map((_, i) => new RecordingDataplane(kernelOf(i)));
    for (const [i, nodeName] of names.entries()) {
      agents.push(
        runClusterAgent({
          nodeName,
          client: new KubeClient({ kubeconfig }),
          dataplane: dataplanes[i]!,
          log,
          metrics: new AgentMetrics(),
          resyncMs: 300_000,
          debounceMs: 200,
          lease: { namespace: 'ipip-operator', name: 'ipip-operator-status' },
        }),
      );
    }
    await eventually('every agent ready', async () => agents.every((a) => a.ready() === true), {
      timeoutMs: 300_000,
      intervalMs: 200,
    });

    const m0 = await serverMetrics(api);
    const t0 = Date.now();
    const tunnel = {
      apiVersion: 'tunnel.ipip-operator.dev/v1alpha1',
      kind: 'IpipTunnel',
      metadata: { name: 'mesh' },
      spec: {
        linkName: 'ipipmesh',
        endpoints: names.map((nodeName, i) => ({
          nodeName,
          underlay: { interface: 'eth1' },
          overlayAddress: `172.16.${Math.floor(i / 250)}.${(i % 250) + 1}`,
        })),
      },
    };
    await kubectl(['apply', '-f', '-'], JSON.stringify(tunnel));
    await eventually(
      `READY ${n}/${n}`,
      async () => {
        const r = await api.kubectl(['get', 'ipt', 'mesh', '-o', 'jsonpath={.status.readySummary}']);
        return r.stdout.trim() === `${n}/${n}`;
      },
      { timeoutMs: 600_000, intervalMs: 250 },
    );
    const readyS = (Date.now() - t0) / 1000;
    // What READY promises: every node has its link and a route to each of its N-1 peers.
    for (const [i, dp] of dataplanes.entries()) {
      const routes = dp.state.routes.filter((r) => r.dev === 'ipipmesh' && r.onlink === true).length;
      if (routes !== n - 1) throw new Error(`${names[i]} has ${routes} mesh routes, not ${n - 1}`);
    }
    // The last aggregate may still be on its way: let writes stop, then measure.
    let applies = -1;
    let still = 0;
    await eventually(
      'no status write for 3 s',
      async () => {
        const m = await serverMetrics(api);
        const now = (m.get('requests APPLY ipipnodes') ?? 0) + (m.get('requests APPLY ipiptunnels/status') ?? 0);
        still = now === applies ? still + 1 : 0;
        applies = now;
        return still >= 3;
      },
      { timeoutMs: 120_000, intervalMs: 1000 },
    );
    const m1 = await serverMetrics(api);
    await new Promise((r) => setTimeout(r, IDLE_MS));
    const m2 = await serverMetrics(api);

    const nodeBytes = delta(m0, m1, 'bytes ipipnodes') / n;
    const tunnelBytes = delta(m0, m1, 'bytes ipiptunnels') / n;
    const idleWrites =
      delta(m1, m2, 'requests APPLY ipipnodes') +
      delta(m1, m2, 'requests APPLY ipiptunnels/status') +
      delta(m1, m2, 'requests PATCH ipiptunnels/status');
    const idleBytes = (delta(m1, m2, 'bytes ipipnodes') + delta(m1, m2, 'bytes ipiptunnels')) / n;
    say(
      `| ${n} | ${readyS.toFixed(1)} | ${delta(m0, m1, 'requests APPLY ipipnodes')} | ` +
        `${delta(m0, m1, 'requests APPLY ipiptunnels/status')} | ${kib(nodeBytes)} / ${kib(tunnelBytes)} / ` +
        `${kib(nodeBytes + tunnelBytes)} | ${kib((nodeBytes + tunnelBytes) / n)} | ${idleWrites} / ${kib(idleBytes)} |`,
    );
  } finally {
    await Promise.all(agents.map((a) => a.stop()));
    await api.stop();
  }
}
