// `ipip-operator agent` in a cluster: wires the API client, the kernel, metrics and the
// HTTP endpoints to the cluster controller, and runs until SIGTERM. Loaded by main.ts only
// in cluster mode.

import { InputError } from '../api/manifest.ts';
import { objectNameProblem } from '../api/names.ts';
import { runClusterAgent } from '../controller/cluster.ts';
import { LEASE_NAME } from '../controller/lease.ts';
import { DEBOUNCE_MS } from '../controller/loop.ts';
import { nodeDataplane } from '../dataplane/node.ts';
import { KubeClient } from '../kube/client.ts';
import { startHttpServer } from '../report/http.ts';
import type { Logger } from '../report/log.ts';
import { AgentMetrics } from '../report/metrics.ts';

export interface ClusterCommandOptions {
  nodeName: string;
  log: Logger;
  resyncMs: number;
  kubeconfig?: string;
  metricsAddress: string;
  /** Probes on their own address; by default they are served with the metrics. */
  healthAddress?: string;
  leaseNamespace?: string;
  untilSignal: () => Promise<string>;
}

/** Where the Lease lives: the flag, else $POD_NAMESPACE (downward API), else the pod's own namespace. */
function leaseNamespace(flag: string | undefined): string {
  const namespace = flag ?? process.env.POD_NAMESPACE ?? KubeClient.podNamespace() ?? 'ipip-operator';
  const problem = objectNameProblem(namespace, 63);
  if (problem !== undefined) throw new InputError(`--lease-namespace: "${namespace}" ${problem}`);
  return namespace;
}

export async function runClusterCommand(o: ClusterCommandOptions): Promise<number> {
  const { log } = o;
  const namespace = leaseNamespace(o.leaseNamespace);
  const metrics = new AgentMetrics();
  let client: KubeClient;
  try {
    client = new KubeClient({
      ...(o.kubeconfig === undefined ? {} : { kubeconfig: o.kubeconfig }),
      onRequest: metrics.recordApiRequest,
    });
  } catch (error) {
    throw new InputError(`cannot load the cluster configuration: ${(error as Error).message}`);
  }
  const dataplane = nodeDataplane({
    onCommand: metrics.commandObserver,
    onMonitorError: (error) => log.warn('kernel monitor restarted', { error }),
  });
  const agent = runClusterAgent({
    nodeName: o.nodeName,
    client,
    dataplane,
    log,
    metrics,
    resyncMs: o.resyncMs,
    debounceMs: DEBOUNCE_MS,
    lease: { namespace, name: LEASE_NAME },
  });
  const probes = { isReady: agent.ready, isHealthy: agent.healthy };
  const servers = [
    await startHttpServer({
      address: o.metricsAddress,
      metrics,
      log,
      ...(o.healthAddress === undefined ? probes : {}),
    }),
  ];
  if (o.healthAddress !== undefined) servers.push(await startHttpServer({ address: o.healthAddress, log, ...probes }));
  const signal = await o.untilSignal();
  log.info('stopping; tunnels stay as they are', { signal });
  await Promise.all(servers.map((s) => s.close()));
  await agent.stop();
  client.close();
  return 0;
}
