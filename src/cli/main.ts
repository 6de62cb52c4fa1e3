#!/usr/bin/env node
// ipip-operator: the agent (in a cluster, or standalone with a manifest), `plan` and `version`.
// Exit codes: 0 done, 1 runtime failure, 2 bad input (the message names the field or flag).

import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { InputError } from '../api/manifest.ts';
import { loadManifest, reconcileOnce, runStandalone } from '../controller/standalone.ts';
import { nodeDataplane } from '../dataplane/node.ts';
import { renderPlan } from '../dataplane/render.ts';
import type { KernelState } from '../model/kernel.ts';
import { problemsOf } from '../model/problem.ts';
import type { TunnelProblem } from '../model/problem.ts';
import { plan } from '../plan/engine.ts';
import { DEFAULT_METRICS_PORT, parseListenAddress } from '../report/http.ts';
import { createLogger } from '../report/log.ts';
import type { Logger } from '../report/log.ts';
import { resolve } from '../resolve/resolve.ts';
import { parseDuration, parseLogFormat, parseLogLevel, parseNodeName, RESYNC_BOUNDS } from './args.ts';

const USAGE = `Usage:
  ipip-operator agent [--node-name NODE] [options]
      Cluster mode (a DaemonSet): watch IpipTunnels and Nodes on the API server, keep this
      node's kernel as they say, report status, conditions, Events and metrics.
      --node-name NODE         this node (default: $NODE_NAME, from the downward API)
      --kubeconfig FILE        (default: $KUBECONFIG, else the pod's ServiceAccount, else ~/.kube/config)
      --metrics-address ADDR   /metrics, /healthz and /readyz (default :9477)
      --health-address ADDR    serve /healthz and /readyz here instead (default: with the metrics)
      --lease-namespace NS     where the Lease electing the status writer lives
                               (default: $POD_NAMESPACE, else the pod's namespace, else ipip-operator)
  ipip-operator agent --manifest FILE --node-name NODE [--once] [options]
      Standalone mode: bring this node's kernel to the tunnels in FILE (multi-document
      YAML of IpipTunnel objects, a regular file of at most 8 MiB, unknown fields refused,
      status ignored), once or continuously.
      --once                 reconcile once, print a JSON summary and exit
  Both modes:
      --resync-period DUR    full resync period, 1s to 24h (default 60s)
      --log-format json|text (default json)   --log-level error|warn|info|debug (default info)
  ipip-operator plan -f FILE --node NODE [--from-scratch]
      Print the ip commands the agent would run on NODE now, one per line; change nothing.
      --from-scratch         plan against a kernel with none of our objects, without reading it
                             (the underlay MTU is then assumed to be 1500)
  ipip-operator version
Exit codes: 0 done, 1 runtime failure, 2 bad input.`;

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

type Options = NonNullable<NonNullable<Parameters<typeof parseArgs>[0]>['options']>;

function parse(argv: string[], options: Options) {
  try {
    return parseArgs({ args: argv, options, strict: true, allowPositionals: false });
  } catch (error) {
    throw new InputError(`${(error as Error).message}\n\n${USAGE}`);
  }
}

/** Config problems exit 2; a kernel that said no exits 1. */
function exitCodeFor(problems: readonly TunnelProblem[]): number {
  if (problems.length === 0) return 0;
  return problems.some((p) => p.reason === 'KernelError') ? 1 : 2;
}

async function planCommand(argv: string[]): Promise<number> {
  const { values } = parse(argv, {
    file: { type: 'string', short: 'f' },
    node: { type: 'string' },
    'from-scratch': { type: 'boolean', default: false },
  });
  if (typeof values.file !== 'string') throw new InputError('-f FILE is required');
  const nodeName = parseNodeName('node', values.node as string | undefined);
  const tunnels = await loadManifest(values.file);
  const fromScratch = values['from-scratch'] === true;
  const observed: KernelState = fromScratch ? { links: [], routes: [] } : await nodeDataplane().observe();
  const resolutions = resolve({
    nodeName,
    tunnels,
    kernel: fromScratch ? undefined : observed,
    nodeAddresses: new Map(),
  });
  const { actions, conflicts } = plan(resolutions, observed);
  for (const line of renderPlan(actions)) process.stdout.write(`${line}\n`);
  const problems: TunnelProblem[] = [...problemsOf(resolutions), ...conflicts];
  for (const p of problems) {
    process.stderr.write(`tunnel ${p.tunnel}: ${p.reason}: ${p.message}\n`);
  }
  return exitCodeFor(problems);
}

function listenAddress(flag: string, text: string): string {
  try {
    parseListenAddress(text);
    return text;
  } catch (error) {
    throw new InputError(`--${flag}: ${(error as Error).message}`);
  }
}

/** Resolves on SIGTERM or SIGINT, telling which. */
export function untilSignal(): Promise<string> {
  return new Promise((done) => {
    process.once('SIGTERM', () => done('SIGTERM'));
    process.once('SIGINT', () => done('SIGINT'));
  });
}

async function agentCommand(argv: string[]): Promise<number> {
  const { values } = parse(argv, {
    manifest: { type: 'string' },
    'node-name': { type: 'string' },
    once: { type: 'boolean', default: false },
    'resync-period': { type: 'string', default: '60s' },
    'log-format': { type: 'string', default: 'json' },
    'log-level': { type: 'string', default: 'info' },
    kubeconfig: { type: 'string' },
    'metrics-address': { type: 'string', default: `:${DEFAULT_METRICS_PORT}` },
    'health-address': { type: 'string' },
    'lease-namespace': { type: 'string' },
  });
  const nodeName = parseNodeName('node-name', (values['node-name'] as string | undefined) ?? process.env.NODE_NAME);
  const log = createLogger({
    format: parseLogFormat(values['log-format'] as string),
    level: parseLogLevel(values['log-level'] as string),
  });
  const resyncMs = parseDuration('resync-period', values['resync-period'] as string, RESYNC_BOUNDS);
  if (typeof values.manifest === 'string')
    return standaloneAgent(values.manifest, values.once === true, nodeName, resyncMs, log);
  if (values.once === true) throw new InputError('--once needs --manifest: in a cluster the agent runs continuously');

  const metricsAddress = listenAddress('metrics-address', values['metrics-address'] as string);
  const healthAddress =
    values['health-address'] === undefined
      ? undefined
      : listenAddress('health-address', values['health-address'] as string);
  // Loaded only here: the Kubernetes client costs seconds to load on a slow machine, which
  // `plan` and the standalone agent should not pay.
  const { runClusterCommand } = await import('./cluster-agent.ts');
  return runClusterCommand({
    nodeName,
    log,
    resyncMs,
    metricsAddress,
    untilSignal,
    ...(healthAddress === undefined ? {} : { healthAddress }),
    ...(values.kubeconfig === undefined ? {} : { kubeconfig: values.kubeconfig as string }),
    ...(values['lease-namespace'] === undefined ? {} : { leaseNamespace: values['lease-namespace'] as string }),
  });
}

async function standaloneAgent(
  manifest: string,
  once: boolean,
  nodeName: string,
  resyncMs: number,
  log: Logger,
): Promise<number> {
  const dataplane = nodeDataplane({ onMonitorError: (error) => log.warn('kernel monitor restarted', { error }) });
  if (once) {
    const summary = await reconcileOnce({ manifestPath: manifest, nodeName, dataplane, log });
    process.stdout.write(`${JSON.stringify(summary)}\n`);
    return exitCodeFor(summary.errors);
  }
  // Fail fast on a manifest that is bad from the start; later bad edits keep the last good one.
  await loadManifest(manifest);
  const agent = runStandalone({ manifestPath: manifest, nodeName, dataplane, log, resyncMs, debounceMs: 200 });
  const signal = await untilSignal();
  log.info('stopping; tunnels stay as they are', { signal });
  await agent.stop();
  return 0;
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'agent':
        return await agentCommand(rest);
      case 'plan':
        return await planCommand(rest);
      case 'version':
        process.stdout.write(`${version()}\n`);
        return 0;
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        process.stdout.write(`${USAGE}\n`);
        return command === undefined ? 2 : 0;
      default:
        throw new InputError(`unknown command "${command}"\n\n${USAGE}`);
    }
  } catch (error) {
    if (error instanceof InputError) {
      process.stderr.write(`ipip-operator: ${error.message}\n`);
      return 2;
    }
    // A runtime failure (the kernel's `ip` missing, say): what failed, not a stack trace.
    process.stderr.write(`ipip-operator: ${error instanceof Error ? error.message : String(error)}\n`);
    return 1;
  }
}

// `ipip-operator plan ... | head` closes stdout early: that is the reader's choice, not a failure.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw error;
});
process.exitCode = await main(process.argv.slice(2));
