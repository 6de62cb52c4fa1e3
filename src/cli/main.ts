#!/usr/bin/env node
// ipip-operator: the agent (in a cluster, or standalone with a manifest), `plan` and `version`.
// Exit codes: 0 done, 1 runtime failure, 2 bad input (the message names the field or flag).

import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { InputError } from '../api/manifest.ts';
import { DEBOUNCE_MS } from '../controller/loop.ts';
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

// The help is laid out as a Go operator's (cobra's) is: a description, Usage, Examples,
// Flags with their type and default, and each command's own --help.
const ROOT_HELP = `ipip-operator builds Linux IPIP tunnels between nodes from IpipTunnel resources and keeps
them right: one agent per node (a DaemonSet in a cluster, or standalone with a manifest)
brings that node's kernel to what the tunnels say, touches nothing it did not create, and
repairs drift.

Usage:
  ipip-operator [command]

Available Commands:
  agent       Run the node agent: in a cluster, or standalone with --manifest
  help        Help about any command
  plan        Print the commands the agent would run on a node now; change nothing
  version     Print the version

Flags:
  -h, --help      help for ipip-operator
  -v, --version   version for ipip-operator

Use "ipip-operator [command] --help" for more information about a command.
Exit codes: 0 done, 1 runtime failure, 2 bad input.`;

const COMMAND_HELP: Record<'agent' | 'plan' | 'version', string> = {
  agent: `Run the node agent.

In a cluster (a DaemonSet) it watches IpipTunnels and Nodes on the API server, keeps this
node's kernel as they say, and reports status, conditions, Events and metrics. With
--manifest it runs standalone: it brings this node's kernel to the tunnels in FILE
(multi-document YAML of IpipTunnel objects, a regular file of at most 8 MiB, unknown
fields refused, status ignored), once or continuously. SIGTERM stops it and leaves the
tunnels up.

Usage:
  ipip-operator agent [--node-name NODE] [flags]
  ipip-operator agent --manifest FILE --node-name NODE [--once] [flags]

Examples:
  # In a pod: NODE_NAME from the downward API, the pod's ServiceAccount
  ipip-operator agent
  # Outside a pod
  ipip-operator agent --kubeconfig ~/.kube/config --node-name node-a
  # Standalone: reconcile once and print a JSON summary
  ipip-operator agent --manifest tunnel.yaml --node-name node-a --once

Flags:
      --node-name string         this node (default: $NODE_NAME, from the downward API)
      --kubeconfig string        cluster mode (default: $KUBECONFIG, else the pod's ServiceAccount, else ~/.kube/config)
      --metrics-address string   cluster mode: /metrics, /healthz and /readyz, HOST:PORT or :PORT (default ":${DEFAULT_METRICS_PORT}")
      --health-address string    cluster mode: serve /healthz and /readyz here instead (default: with the metrics)
      --lease-namespace string   cluster mode: where the Lease electing the status writer lives
                                 (default: $POD_NAMESPACE, else the pod's namespace, else ipip-operator)
      --manifest string          standalone mode: the IpipTunnels to program, from this file
      --once                     standalone mode: reconcile once, print a JSON summary and exit
      --resync-period duration   full resync period, 1s to 24h (default 60s)
      --log-format string        json or text (default "json")
      --log-level string         error, warn, info or debug (default "info")
  -h, --help                     help for agent

Exit codes: 0 done, 1 runtime failure (the kernel refused a command), 2 bad input.`,
  plan: `Print the commands the agent would run on a node now, one per line, and change
nothing. Without --from-scratch it reads this host's kernel, as the agent would.

Usage:
  ipip-operator plan -f FILE --node NODE [flags]

Examples:
  ipip-operator plan -f tunnel.yaml --node node-a
  # Against a kernel with none of the agent's objects, without reading it
  ipip-operator plan -f tunnel.yaml --node node-a --from-scratch

Flags:
  -f, --file string    the IpipTunnels, a YAML file as for agent --manifest
      --node string    the node to plan for
      --from-scratch   plan against a kernel with none of our objects, without reading it
                       (the underlay MTU is then assumed to be 1500)
  -h, --help           help for plan

Exit codes: 0 done, 1 runtime failure, 2 bad input or a tunnel this node cannot program as written.`,
  version: `Print the version of ipip-operator (the package version, which is also the image tag).

Usage:
  ipip-operator version [flags]

Flags:
  -h, --help   help for version`,
};

type Command = keyof typeof COMMAND_HELP;

/** How a bad flag ends: what is wrong and where the help is, as kubectl and cobra say it. */
function seeHelp(command?: Command): string {
  return `Run 'ipip-operator ${command === undefined ? '' : `${command} `}--help' for usage.`;
}

/** --help or -h among a command's arguments (before a "--"), wherever it is, as cobra reads it. */
function asksForHelp(argv: string[]): boolean {
  const end = argv.indexOf('--');
  return (end === -1 ? argv : argv.slice(0, end)).some((a) => a === '--help' || a === '-h');
}

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

type Options = NonNullable<NonNullable<Parameters<typeof parseArgs>[0]>['options']>;

function parse(command: Command, argv: string[], options: Options) {
  try {
    return parseArgs({ args: argv, options, strict: true, allowPositionals: false });
  } catch (error) {
    throw new InputError(`${(error as Error).message}\n${seeHelp(command)}`);
  }
}

/** Config problems exit 2; a kernel that said no exits 1. */
function exitCodeFor(problems: readonly TunnelProblem[]): number {
  if (problems.length === 0) return 0;
  return problems.some((p) => p.reason === 'KernelError') ? 1 : 2;
}

async function planCommand(argv: string[]): Promise<number> {
  const { values } = parse('plan', argv, {
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
  const { values } = parse('agent', argv, {
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
  const agent = runStandalone({ manifestPath: manifest, nodeName, dataplane, log, resyncMs, debounceMs: DEBOUNCE_MS });
  const signal = await untilSignal();
  log.info('stopping; tunnels stay as they are', { signal });
  await agent.stop();
  return 0;
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    if ((command === 'agent' || command === 'plan' || command === 'version') && asksForHelp(rest)) {
      process.stdout.write(`${COMMAND_HELP[command]}\n`);
      return 0;
    }
    switch (command) {
      case 'agent':
        return await agentCommand(rest);
      case 'plan':
        return await planCommand(rest);
      case 'version':
        parse('version', rest, {});
        process.stdout.write(`${version()}\n`);
        return 0;
      case '--version':
      case '-v':
        process.stdout.write(`ipip-operator version ${version()}\n`);
        return 0;
      case 'help': {
        // `help agent` is `agent --help`, as cobra has it.
        const [topic] = rest;
        if (topic === undefined) process.stdout.write(`${ROOT_HELP}\n`);
        else if (topic in COMMAND_HELP) process.stdout.write(`${COMMAND_HELP[topic as Command]}\n`);
        else throw new InputError(`unknown help topic "${topic}"\n${seeHelp()}`);
        return 0;
      }
      case '--help':
      case '-h':
        process.stdout.write(`${ROOT_HELP}\n`);
        return 0;
      case undefined:
        // No command is bad input: the help goes to stderr, stdout stays empty.
        process.stderr.write(`${ROOT_HELP}\n`);
        return 2;
      default:
        throw new InputError(`unknown command "${command}"\n${seeHelp()}`);
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
