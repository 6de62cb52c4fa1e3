// The whole lab, end to end, as the README's first command builds it (test/harness/full-lab.ts,
// the same code as test/harness/lab-cli.ts): a real API server, etcd, controller-manager and
// scheduler, two nodes on real Linux kernels (User-Mode Linux) with strict rp_filter, each
// running containerd and a kubelet, the image built from the Dockerfile, the Helm chart
// installed, so the agents are the DaemonSet's pods, Prometheus scraping both. Everything
// is observed as a user would: kubectl (get, logs, exec, delete pod, helm upgrade and
// uninstall), the kernels (ip, ping, tcpdump), Prometheus's HTTP API and promtool.

import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import type { IpipTunnel } from '../../src/api/types.ts';
import { KUBERNETES_SERVICE_IP, run } from '../harness/apiserver.ts';
import { curlInNetns, LAB_NODES } from '../harness/cluster-lab.ts';
import { lookalikeCommands } from '../harness/foreign.ts';
import { AGENT_COMMAND, AGENT_SELECTOR, CHART, LAB_VALUES, RELEASE, startFullLab } from '../harness/full-lab.ts';
import type { FullLab } from '../harness/full-lab.ts';
import {
  AGENT_METRICS_PORT,
  agentMetrics as agentMetricsIn,
  agentReady,
  link as linkOf,
  metricSum,
  metricValue,
  ping as pingFrom,
  routesVia,
  startIpipCapture,
} from '../harness/probes.ts';
import { EXAMPLE, exampleTunnel as example } from '../harness/repo.ts';
import { NET_ADMIN_ONLY, privilegesOf } from '../harness/privileges.ts';
import { eventually as waitUntil, StartedByTest } from '../harness/support.ts';

const NODES = ['node-a', 'node-b'] as const;

interface Pod {
  metadata: { name: string; uid: string; creationTimestamp: string };
  spec: { containers: Array<{ args: string[] }> };
  status: { conditions: Array<{ type: string; status: string; lastTransitionTime: string }> };
}
type Node = (typeof NODES)[number];
const OVERLAY: Record<Node, string> = { 'node-a': '172.0.0.2', 'node-b': '172.0.0.3' };
const ADDRESS: Record<Node, string> = LAB_NODES;

describe('the whole lab: two kernels, a real cluster, kubectl apply, ping, Prometheus', { timeout: 1_200_000 }, () => {
  const started = new StartedByTest<FullLab>('lab');
  const L = (): FullLab => started.get();

  after(async () => {
    await started.started?.stop();
  });

  const kubectl = (args: string[], input?: string): Promise<string> => L().kubectl(args, input);
  const apply = (t: IpipTunnel): Promise<string> => kubectl(['apply', '-f', '-'], JSON.stringify(t));

  const eventually = <T>(what: string, check: () => Promise<T | undefined | false>, timeoutMs = 60_000): Promise<T> =>
    waitUntil(what, check, { timeoutMs, context: () => L().agentLogTails() });
  const sh = (node: Node, cmd: string) => L().cluster.guest(node).sh(cmd);
  // The readers of probes.ts, on a node's guest.
  const link = (node: Node, name = 'ipiptun') => linkOf(L().cluster.guest(node), name);
  /** The routes the tunnel asks for; not the kernel's own route to the peer address. */
  const routes = (node: Node) => routesVia(L().cluster.guest(node), 'ipiptun');
  const ping = (from: Node, to: string, count = 1) => pingFrom(L().cluster.guest(from), to, count);
  /** An agent's /metrics, fetched from the lab's namespace (as Prometheus does). */
  const agentMetrics = (node: Node) =>
    curlInNetns(L().cluster.netns, `http://${ADDRESS[node]}:${AGENT_METRICS_PORT}/metrics`);
  const ready = (): Promise<IpipTunnel> => L().cluster.waitTunnelReady('lab');
  /** The agent's pod on a node, whole, as kubectl gets it. */
  const podJson = async (node: Node): Promise<Pod> => {
    const name = (await L().agentPod(node))?.name;
    assert.ok(name !== undefined, `an agent pod on ${node}`);
    return JSON.parse(await kubectl(['get', 'pod', '-n', RELEASE.namespace, name, '-o', 'json'])) as Pod;
  };

  /**
   * What a real host has that is not the agent's, and looks like it: a routing daemon's
   * route with a metric, a veth carrying the agent's alias, a route with the agent's
   * protocol on the underlay. Added at boot; compared after every fault.
   */
  const FOREIGN = [
    'ip route add 10.9.0.0/16 via 192.168.40.1 dev eth1 proto bird metric 50',
    ...lookalikeCommands('ip'),
  ].join(' && ');
  const foreign = async (node: Node): Promise<string> =>
    (await sh(node, 'ip -d link show vmark; ip route show 10.9.0.0/16; ip route show 10.77.0.0/16')).stdout;
  const foreignBefore: Partial<Record<Node, string>> = {};
  async function foreignUntouched(): Promise<void> {
    for (const node of NODES)
      assert.equal(await foreign(node), foreignBefore[node], `${node}: foreign objects untouched`);
  }
  /** Warning Events of the tunnel, as `kubectl get events` counts them. */
  async function warnings(): Promise<number> {
    return (await L().cluster.tunnelEvents('lab', 'Warning')).reduce((n, e) => n + (e.count ?? 1), 0);
  }

  test(
    'lab up: a control plane, two UML nodes with kubelets and strict rp_filter, the chart installed with helm, ' +
      'a DaemonSet pod per node Ready, Prometheus scraping both',
    async () => {
      await started.start(() => startFullLab());
      const nodes = JSON.parse(await kubectl(['get', 'nodes', '-o', 'json'])) as {
        items: Array<{
          metadata: { name: string };
          status: { addresses: Array<{ type: string; address: string }>; nodeInfo: { kubeletVersion: string } };
        }>;
      };
      const server = JSON.parse(await kubectl(['version', '-o', 'json'])) as { serverVersion: { gitVersion: string } };
      for (const node of NODES) {
        const n = nodes.items.find((i) => i.metadata.name === node);
        assert.ok(n !== undefined, `${node} registered itself`);
        assert.equal(n.status.addresses.find((a) => a.type === 'InternalIP')?.address, ADDRESS[node]);
        assert.equal(
          n.status.nodeInfo.kubeletVersion,
          server.serverVersion.gitVersion,
          'the kubelet at the server version',
        );
        const pod = await L().agentPod(node);
        assert.equal(pod?.ready, true, `the agent pod on ${node} is Ready`);
        assert.match(pod?.image ?? '', /^ghcr\.io\/ipip-operator\/ipip-operator:/);
      }
      for (const node of NODES) {
        assert.equal(
          (await sh(node, 'sysctl -n net.ipv4.conf.all.rp_filter')).stdout.trim(),
          '1',
          `strict rp_filter on ${node}`,
        );
      }
      assert.match(
        await L()
          .helm(['list', '-n', 'ipip-operator', '-q'])
          .then((r) => r.stdout),
        /^ipip-operator$/m,
        'the release is installed',
      );
      assert.deepEqual(await L().prometheus.targetHealth(), { 'node-a': 'up', 'node-b': 'up' });
    },
  );

  test(
    'the runtime runs the agents as the chart asks: only CAP_NET_ADMIN (bounding, permitted, effective), ' +
      'no_new_privs, seccomp, a read-only root; kubectl logs and exec work',
    async () => {
      const onlyNetAdmin = {
        CapInh: '0000000000000000',
        CapPrm: NET_ADMIN_ONLY,
        CapEff: NET_ADMIN_ONLY,
        CapBnd: NET_ADMIN_ONLY,
        CapAmb: '0000000000000000',
        NoNewPrivs: '1',
      };
      for (const node of NODES) {
        const pod = await L().agentPod(node);
        assert.ok(pod !== undefined, `the agent pod of ${node}`);
        // What the pod itself sees, through the API server, the kubelet and the runtime.
        const status = await kubectl(['exec', '-n', RELEASE.namespace, pod.name, '--', 'cat', '/proc/self/status']);
        assert.deepEqual(privilegesOf(status), onlyNetAdmin, `${node}: kubectl exec reads its own status`);
        assert.match(status, /^Seccomp:\s+2$/m, `${node}: a seccomp filter (RuntimeDefault)`);
        // And the agent's process as the node's kernel has it.
        const pid = await L().agentPid(node);
        assert.ok(pid !== undefined, `the agent of ${node} runs`);
        assert.deepEqual(privilegesOf((await sh(node, `cat /proc/${pid}/status`)).stdout), onlyNetAdmin, node);
        const write = await L().cluster.api.kubectl([
          'exec',
          '-n',
          RELEASE.namespace,
          pod.name,
          '--',
          'touch',
          '/ipip-operator-probe',
        ]);
        assert.notEqual(write.code, 0, 'the root filesystem is read-only');
        assert.match(write.stderr, /Read-only file system/);
        assert.match(await L().agentLog(node), /agent started/, `${node}: kubectl logs shows the agent's log`);
        await sh(node, FOREIGN).then((r) => assert.equal(r.code, 0, r.stderr));
        foreignBefore[node] = await foreign(node);
      }
    },
  );

  test('kubectl apply the example -> Ready 2/2, ping both ways, the capture shows IPIP (proto 4) packets', async () => {
    await kubectl(['apply', '-f', EXAMPLE]);
    const t = await ready();
    assert.equal(t.status?.observedGeneration, 1);
    assert.match(await kubectl(['get', 'ipt', 'lab']), /^lab\s+ipip\s+2\/2\s/m);
    for (const node of NODES) {
      const l = await link(node);
      assert.equal(l?.linkinfo?.info_kind, 'ipip');
      assert.deepEqual(await routes(node), ['172.0.0.0/24']);
    }
    const capture = await startIpipCapture(L().cluster.guest('node-b'));
    assert.ok(await ping('node-a', OVERLAY['node-b'], 3), 'node-a pings node-b through the tunnel');
    const out = (await capture.done).stdout;
    // tcpdump 4.99 says "proto IPIP (4)"; older versions printed "ipip-proto-4".
    assert.match(out, /proto IPIP \(4\)|ipip-proto-4/, out);
    assert.match(
      out,
      /192\.168\.40\.2 > 192\.168\.40\.3: IP .*\n\s+172\.0\.0\.2 > 172\.0\.0\.3: ICMP echo request/,
      out,
    );
    assert.ok(await ping('node-b', OVERLAY['node-a'], 3), 'node-b pings node-a through the tunnel');
  });

  test('Prometheus: ipip_operator_tunnel_up == 1 for both nodes; the kernel byte counters grow after a ping', async () => {
    const prom = L().prometheus;
    const up = await eventually('tunnel_up == 1 for both nodes in Prometheus', async () => {
      const v = await prom.byNode('ipip_operator_tunnel_up{tunnel="lab"} == 1');
      return v['node-a'] === 1 && v['node-b'] === 1 ? v : undefined;
    });
    assert.deepEqual(up, { 'node-a': 1, 'node-b': 1 });
    const rx = (): Promise<Record<string, number>> =>
      prom.byNode('ipip_operator_tunnel_receive_bytes_total{tunnel="lab"}');
    // The agents refresh the counters on each reconcile (every 5 s in the lab); wait for a
    // settled value, ping, then wait for a scrape of the next refresh.
    const before = await eventually('receive byte counters of both nodes in Prometheus', async () => {
      const v = await rx();
      return v['node-a'] !== undefined && v['node-b'] !== undefined ? v : undefined;
    });
    assert.ok(await ping('node-a', OVERLAY['node-b'], 5));
    assert.ok(await ping('node-b', OVERLAY['node-a'], 5));
    // Each node received at least 5 echo replies and 5 echo requests of 84 bytes (inner packets).
    const grown = await eventually(
      'receive byte counters grew on both nodes',
      async () => {
        const v = await rx();
        return NODES.every((n) => (v[n] ?? 0) >= before[n]! + 10 * 84) ? v : undefined;
      },
      45_000,
    );
    for (const n of NODES) assert.ok(grown[n]! > before[n]!, `${n}: ${before[n]} -> ${grown[n]} bytes`);
  });

  test("promtool check metrics passes on each agent's /metrics", async () => {
    for (const node of NODES) {
      const text = await agentMetrics(node);
      const r = await run('promtool', ['check', 'metrics'], { input: text, timeoutMs: 30_000 });
      assert.equal(r.code, 0, `promtool check metrics on ${node}:\n${r.stdout}${r.stderr}`);
    }
  });

  test('route churn of others on a node (a BGP daemon adding and withdrawing 400 routes) wakes no reconcile; our own route does', async () => {
    const events = (text: string, outcome: string) =>
      metricValue(text, 'ipip_operator_kernel_events_total', { outcome });
    const before = await agentMetrics('node-a');
    // Four bursts of 50 routes on the underlay, protocol 186 (bgp), each added then withdrawn;
    // the next burst once the monitor has seen all 100 events of this one.
    for (let burst = 0; burst < 4; burst++) {
      for (const verb of ['add', 'del']) {
        const r = await sh(
          'node-a',
          `for i in $(seq 1 50); do echo "route ${verb} 10.250.${burst}.$i/32 via ${ADDRESS['node-b']} dev eth1 proto 186"; done | ip -batch -`,
        );
        assert.equal(r.code, 0, r.stderr);
      }
      await eventually(
        `the monitor saw the 100 route events of burst ${burst + 1}`,
        async () => events(await agentMetrics('node-a'), 'ignored') - events(before, 'ignored') >= 100 * (burst + 1),
      );
    }
    const after = await eventually('the monitor saw the 400 route events', async () => {
      const text = await agentMetrics('node-a');
      return events(text, 'ignored') - events(before, 'ignored') >= 400 ? text : undefined;
    });
    assert.equal(events(after, 'reconcile') - events(before, 'reconcile'), 0, 'none of them concerned the tunnel');

    // One of ours, deleted by hand: that one wakes the agent, which puts it back.
    await sh('node-a', 'ip route del 172.0.0.0/24 dev ipiptun');
    await eventually(
      'node-a woke for its own route and put it back',
      async () => {
        const text = await agentMetrics('node-a');
        return events(text, 'reconcile') > events(after, 'reconcile') &&
          (await routes('node-a')).includes('172.0.0.0/24')
          ? true
          : undefined;
      },
      30_000,
    );
  });

  test('edit the tunnel with kubectl apply: ttl, then a route -> kernels change, Ready again, observedGeneration follows', async () => {
    await apply(
      example((t) => {
        t.spec.ttl = 32;
      }),
    );
    let t = await ready();
    assert.equal(t.metadata.generation, 2);
    assert.equal(t.status?.observedGeneration, 2);
    for (const node of NODES) {
      await eventually(`ttl 32 on ${node}`, async () =>
        (await link(node))?.linkinfo?.info_data?.ttl === 32 ? true : undefined,
      );
    }
    await apply(
      example((t) => {
        t.spec.ttl = 32;
        t.spec.routes = ['172.0.0.0/24', '10.99.0.0/24'];
      }),
    );
    t = await ready();
    assert.equal(t.metadata.generation, 3);
    assert.equal(t.status?.observedGeneration, 3);
    for (const node of NODES) {
      await eventually(`route 10.99.0.0/24 on ${node}`, async () =>
        (await routes(node)).includes('10.99.0.0/24') ? true : undefined,
      );
      assert.deepEqual(await routes(node), ['10.99.0.0/24', '172.0.0.0/24']);
    }
    assert.ok(await ping('node-a', OVERLAY['node-b']));
  });

  test('SIGKILL an agent: the kubelet restarts it, the link is not recreated (same index and counters), Ready again', async () => {
    const before = await link('node-b');
    assert.ok(before !== undefined);
    const podBefore = await L().agentPod('node-b');
    const pid = await L().agentPid('node-b');
    assert.ok(podBefore !== undefined && pid !== undefined, 'the agent runs on node-b');
    await sh('node-b', `kill -KILL ${pid}`);
    // The kubelet can publish the new restart count a status update before the old
    // container's end (lastState), seen once in CI: all three are waited for.
    const restarted = await eventually('the kubelet restarted the agent on node-b, Ready again', async () => {
      const pod = await L().agentPod('node-b');
      return pod?.ready === true && pod.restarts === podBefore.restarts + 1 && pod.lastExitCode !== undefined
        ? pod
        : undefined;
    });
    assert.equal(restarted.lastExitCode, 128 + 9, 'the container died of SIGKILL');
    assert.equal(restarted.uid, podBefore.uid, 'the same pod');
    // Not before the new agent has run full reconciles: its first, and one resync (5 s) more.
    await eventually(
      'two reconciles by the restarted agent on node-b',
      async () => metricSum(await agentMetrics('node-b'), 'ipip_operator_reconcile_total') >= 2,
      30_000,
    );
    await ready();
    const afterRestart = await link('node-b');
    assert.equal(afterRestart?.ifindex, before.ifindex, 'same link index');
    assert.deepEqual(afterRestart?.stats64?.rx, before.stats64?.rx, 'same receive counters');
    assert.deepEqual(afterRestart?.stats64?.tx, before.stats64?.tx, 'same transmit counters');
    const view = await L().cluster.tunnel('lab');
    assert.equal(view?.status?.readySummary, '2/2');
  });

  test('kubectl delete pod of an agent: the DaemonSet makes a new pod, which adopts the tunnel and changes nothing', async () => {
    const before = await link('node-a');
    const old = await L().agentPod('node-a');
    assert.ok(before !== undefined && old !== undefined);
    await kubectl(['delete', 'pod', '-n', RELEASE.namespace, old.name, '--wait=true']);
    const fresh = await L().waitAgentReady('node-a');
    assert.notEqual(fresh.uid, old.uid, 'a new pod');
    await eventually(
      'two reconciles by the new agent on node-a',
      async () => metricSum(await agentMetrics('node-a'), 'ipip_operator_reconcile_total') >= 2,
      30_000,
    );
    const metrics = await agentMetrics('node-a');
    assert.equal(metricSum(metrics, 'ipip_operator_dataplane_changes_total'), 0, 'the new agent changed nothing');
    assert.doesNotMatch(await L().agentLog('node-a'), /kernel change/, 'and logged no kernel change');
    const after = await link('node-a');
    assert.equal(after?.ifindex, before.ifindex, 'same link index');
    assert.deepEqual(after?.stats64?.tx, before.stats64?.tx, 'same transmit counters');
    await ready();
  });

  test('helm upgrade with a changed value rolls the pods one node at a time; the tunnel stays up and answers all along', async () => {
    const before = Object.fromEntries(await Promise.all(NODES.map(async (n) => [n, await L().agentPod(n)] as const)));
    const indexes = await Promise.all(NODES.map(async (n) => (await link(n))?.ifindex));
    // Pings every 0.2 s from node-a through the tunnel for the whole rollout.
    await L().cluster.startInGuest('node-a', 'rollout-ping', ['ping', '-i', '0.2', '-W', '1', OVERLAY['node-b']]);
    const upgraded = await L().helm([
      'upgrade',
      RELEASE.name,
      CHART,
      '--namespace',
      RELEASE.namespace,
      ...LAB_VALUES.flatMap((v) => ['--set', v]),
      '--set',
      'logLevel=debug',
    ]);
    assert.equal(upgraded.code, 0, upgraded.stderr);
    await kubectl(['rollout', 'status', `daemonset/${RELEASE.name}`, '-n', RELEASE.namespace, '--timeout=300s']);
    const stopped = await L().cluster.stopInGuest('node-a', 'rollout-ping', 'INT');
    const summary = /(\d+) packets transmitted, (\d+) received/.exec(
      await L().cluster.guestLog('node-a', 'rollout-ping'),
    );
    assert.ok(
      summary !== null && stopped.status === 0,
      `ping's summary: ${await L().cluster.guestLog('node-a', 'rollout-ping')}`,
    );
    const [sent, answered] = [Number(summary[1]), Number(summary[2])];
    assert.ok(sent >= 10, `pinged through the rollout (${sent} sent)`);
    // SIGINT ends ping at once: the echo sent just before may still be on its way back.
    assert.ok(answered >= sent - 1, `every ping of the rollout answered (but the last, maybe): ${answered} of ${sent}`);
    const pods = await Promise.all(NODES.map((n) => podJson(n)));
    for (const [i, node] of NODES.entries()) {
      assert.notEqual(pods[i]!.metadata.uid, before[node]?.uid, `${node}: a new pod`);
      assert.ok(pods[i]!.spec.containers[0]!.args.includes('--log-level=debug'), `${node}: with the new value`);
    }
    // maxUnavailable 1: the later pod was created only once the earlier one was Ready.
    const [first, second] = [...pods].sort((a, b) =>
      a.metadata.creationTimestamp.localeCompare(b.metadata.creationTimestamp),
    );
    const firstReady = first!.status.conditions.find((c) => c.type === 'Ready')!.lastTransitionTime;
    assert.ok(
      second!.metadata.creationTimestamp >= firstReady,
      `${second!.metadata.name} created at ${second!.metadata.creationTimestamp}, after ${first!.metadata.name} was Ready at ${firstReady}`,
    );
    assert.deepEqual(await Promise.all(NODES.map(async (n) => (await link(n))?.ifindex)), indexes, 'the links stayed');
    await ready();
  });

  test('drift by hand on one node (route deleted, link down) -> repaired, counted in ipip_operator_drift_corrections_total', async () => {
    const driftBefore = metricValue(await agentMetrics('node-a'), 'ipip_operator_drift_corrections_total');
    await sh('node-a', 'ip route del 172.0.0.0/24 dev ipiptun && ip link set ipiptun down');
    await eventually(
      'node-a repaired: link up, route back',
      async () => {
        const l = await link('node-a');
        const r = await routes('node-a');
        return l?.flags?.includes('UP') === true && r.includes('172.0.0.0/24') && r.includes('10.99.0.0/24')
          ? true
          : undefined;
      },
      30_000,
    );
    const driftAfter = await eventually('drift corrections counted', async () => {
      const v = metricValue(await agentMetrics('node-a'), 'ipip_operator_drift_corrections_total');
      return v > driftBefore ? v : undefined;
    });
    assert.ok(driftAfter >= driftBefore + 1, `drift corrections ${driftBefore} -> ${driftAfter}`);
    // Prometheus sees it too, for node-a only.
    await eventually('Prometheus sees the drift correction on node-a', async () => {
      const v = await L().prometheus.byNode('ipip_operator_drift_corrections_total');
      return (v['node-a'] ?? 0) >= driftAfter ? true : undefined;
    });
    assert.ok(await ping('node-a', OVERLAY['node-b']), 'the tunnel works again');
    await ready();
  });

  test("a node reboots: its kernel starts empty and its agent fresh, every tunnel comes back; the peer's link keeps its ifindex", async () => {
    const peer = await link('node-b');
    assert.ok(peer !== undefined);
    await L().rebootNode('node-a', async () => {
      assert.equal(await link('node-a'), undefined, 'the new kernel starts without the tunnel');
      await sh('node-a', FOREIGN).then((r) => assert.equal(r.code, 0, r.stderr));
      foreignBefore['node-a'] = await foreign('node-a');
    });
    await ready();
    assert.ok((await link('node-a'))?.ifalias === 'ipip-operator/lab', 'node-a has its tunnel again');
    assert.deepEqual(await routes('node-a'), ['10.99.0.0/24', '172.0.0.0/24']);
    assert.equal((await link('node-b'))?.ifindex, peer.ifindex, "the peer's link was not recreated");
    assert.ok(await ping('node-a', OVERLAY['node-b']));
    assert.ok(await ping('node-b', OVERLAY['node-a']));
    await foreignUntouched();
  });

  test('an agent that starts while the API server is away changes nothing until it has listed, then converges', async () => {
    // The kubelet is frozen while the agent is killed, so nothing restarts it before the
    // kernel is set up for it and the API server is away.
    const kubelet = (signal: string) => sh('node-a', `pkill -${signal} -x kubelet`);
    const pid = await L().agentPid('node-a');
    assert.ok(pid !== undefined, 'the agent runs on node-a');
    await kubelet('STOP');
    let kernelBefore: string;
    try {
      await sh('node-a', `kill -TERM ${pid}; while kill -0 ${pid} 2>/dev/null; do sleep 0.1; done`);
      // What the new agent will find: its link set down by hand, and a link of a tunnel deleted meanwhile.
      await sh(
        'node-a',
        'ip link set ipiptun down && ip link add name ipipgone group 203 type ipip local 192.168.40.2 remote 192.168.40.99 ttl 64 dev eth1 && ' +
          'ip link set ipipgone alias ipip-operator/gone',
      );
      kernelBefore = (await sh('node-a', 'ip -d link show; ip route show')).stdout;
      await L().cluster.api.pause();
    } finally {
      await kubelet('CONT');
    }
    try {
      // kubectl logs needs the API server: the node's own copy of the container's log.
      await eventually(
        'the restarted agent tried to list and could not',
        async () =>
          /list failed; keeping the last known state/.test(
            (await sh('node-a', 'cat /var/log/pods/ipip-operator_*/agent/*.log')).stdout,
          ),
        90_000,
      );
      assert.equal(await agentReady(L().cluster.guest('node-a')), false, 'not ready before it has listed');
      assert.equal(
        (await sh('node-a', 'ip -d link show; ip route show')).stdout,
        kernelBefore,
        'and it changed nothing',
      );
    } finally {
      await L().cluster.api.resume();
    }
    await L().waitAgentReady('node-a');
    await eventually(
      'node-a converged: its link up, the stray link gone',
      async () =>
        (await link('node-a'))?.flags?.includes('UP') === true && (await link('node-a', 'ipipgone')) === undefined,
    );
    await ready();
    assert.ok(await ping('node-a', OVERLAY['node-b']));
    await foreignUntouched();
  });

  test('the API server and etcd restart: nothing is torn down, and the agents catch up', async () => {
    const before = await Promise.all(NODES.map(async (n) => (await link(n))?.ifindex));
    await L().cluster.api.restartAll();
    assert.deepEqual(await Promise.all(NODES.map(async (n) => (await link(n))?.ifindex)), before, 'the links stayed');
    await apply(
      example((t) => {
        t.spec.ttl = 48;
        t.spec.routes = ['172.0.0.0/24', '10.99.0.0/24'];
      }),
    );
    await ready();
    for (const node of NODES) {
      await eventually(`ttl 48 on ${node}`, async () => (await link(node))?.linkinfo?.info_data?.ttl === 48);
    }
    assert.deepEqual(await Promise.all(NODES.map(async (n) => (await link(n))?.ifindex)), before, 'changed in place');
    await foreignUntouched();
  });

  test('the underlay link goes down and up: traffic resumes, with no error storm and nothing repaired', async () => {
    // Read inside node-a: with its eth1 down the lab cannot reach the agent's port.
    const inside = () => agentMetricsIn(L().cluster.guest('node-a'));
    const metricsBefore = await inside();
    const warningsBefore = await warnings();
    const index = (await link('node-a'))?.ifindex;
    await sh('node-a', 'ip link set eth1 down');
    await eventually(
      'the agent looked at the kernel after eth1 went down',
      async () =>
        metricValue(await inside(), 'ipip_operator_kernel_events_total', { outcome: 'reconcile' }) >
        metricValue(metricsBefore, 'ipip_operator_kernel_events_total', { outcome: 'reconcile' }),
    ).catch(async (error: unknown) => {
      await sh('node-a', 'ip link set eth1 up');
      throw error;
    });
    assert.equal(await ping('node-a', OVERLAY['node-b']), false, 'no traffic while the underlay is down');
    // The kernel drops the routes through a device that goes down; the host's own network
    // configuration puts its routes back when it comes up (the agent's are on ipiptun).
    // Among them the route to the kubernetes Service (kubelet-node.ts), where a real node has a default route.
    await sh(
      'node-a',
      'ip link set eth1 up && ip route add 10.9.0.0/16 via 192.168.40.1 dev eth1 proto bird metric 50 && ip route add 10.77.0.0/16 dev eth1 proto 203 && ' +
        `ip route replace ${KUBERNETES_SERVICE_IP}/32 via 192.168.40.1 dev eth1`,
    );
    await eventually('traffic resumes', () => ping('node-a', OVERLAY['node-b']), 30_000);
    const metricsAfter = await inside();
    for (const [name, labels] of [
      ['ipip_operator_reconcile_total', { result: 'error' }],
      ['ipip_operator_drift_corrections_total', {}],
    ] as const) {
      assert.equal(
        metricSum(metricsAfter, name, labels),
        metricSum(metricsBefore, name, labels),
        `${name} did not rise`,
      );
    }
    assert.equal(await warnings(), warningsBefore, 'no Warning Event');
    assert.equal((await link('node-a'))?.ifindex, index, 'the tunnel link stayed');
    await ready();
    await foreignUntouched();
  });

  test('kubectl delete the tunnel -> links and routes gone on both nodes', async () => {
    await kubectl(['delete', 'ipiptunnel', 'lab', '--wait=true']);
    for (const node of NODES) {
      await eventually(`ipiptun gone from ${node}`, async () => ((await link(node)) === undefined ? true : undefined));
      const r = await sh(node, 'ip route show 172.0.0.0/24; ip route show 10.99.0.0/24');
      assert.equal(r.stdout.trim(), '', `no tunnel routes left on ${node}`);
    }
    assert.equal(await L().cluster.tunnel('lab'), undefined);
    await foreignUntouched();
  });

  test('helm uninstall, as the README says: the agents go, the tunnels and the CRDs, objects, namespace and Lease stay', async () => {
    await kubectl(['apply', '-f', EXAMPLE]);
    await ready();
    const indexes = await Promise.all(NODES.map(async (n) => (await link(n))?.ifindex));
    const uninstalled = await L().helm(['uninstall', RELEASE.name, '--namespace', RELEASE.namespace, '--wait']);
    assert.equal(uninstalled.code, 0, uninstalled.stderr);
    // The garbage collector deletes the pods after their DaemonSet, and each gets its grace
    // period (30 s) from its kubelet: here it is seconds, but a slow controller-manager may take
    // longer, so the deadline is twice that and a miss shows what the pods and controllers say.
    await waitUntil(
      'the agent pods gone',
      async () => {
        const pods = await kubectl(['get', 'pods', '-n', RELEASE.namespace, '-l', AGENT_SELECTOR, '-o', 'name']);
        return pods.trim() === '' ? true : undefined;
      },
      {
        timeoutMs: 120_000,
        context: async () =>
          `${await kubectl(['get', 'pods', '-n', RELEASE.namespace, '-o', 'wide'])}\n${await L().agentLogTails()}\n${L().cluster.controlPlaneLogs()}`,
      },
    );
    for (const node of NODES)
      assert.equal((await sh(node, `pgrep -f '${AGENT_COMMAND}'`)).code, 1, `no agent runs on ${node}`);
    const gone = await L().cluster.api.kubectl([
      'get',
      'daemonset,serviceaccount,role,rolebinding',
      '-n',
      RELEASE.namespace,
      '-l',
      'app.kubernetes.io/instance=ipip-operator',
      '-o',
      'name',
    ]);
    assert.equal(gone.stdout.trim(), '', 'the DaemonSet, ServiceAccount, Roles and bindings are gone');
    assert.equal(
      (await L().cluster.api.kubectl(['get', 'clusterrole', `${RELEASE.name}-agent`])).code,
      1,
      'the ClusterRole is gone',
    );
    await kubectl(['get', 'crd', 'ipiptunnels.tunnel.ipip-operator.dev', 'ipipnodes.tunnel.ipip-operator.dev']);
    assert.ok((await L().cluster.tunnel('lab')) !== undefined, 'the IpipTunnel stays');
    assert.match(await kubectl(['get', 'ipipnodes', '-o', 'name']), /node-a[\s\S]*node-b/, 'the IpipNodes stay');
    await kubectl(['get', 'namespace', RELEASE.namespace]);
    await kubectl(['get', 'lease', 'ipip-operator-status', '-n', RELEASE.namespace]);
    assert.deepEqual(
      await Promise.all(NODES.map(async (n) => (await link(n))?.ifindex)),
      indexes,
      'the kernels keep the tunnel',
    );
    assert.ok(await ping('node-a', OVERLAY['node-b']), 'and it still carries traffic');
  });
});
