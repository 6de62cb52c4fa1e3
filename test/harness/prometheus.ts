// Debian's Prometheus, inside a cluster lab's network namespace, scraping the agents in
// the guests (their /metrics on :9477 of each node's eth1 address). Reachable only from
// inside that namespace: http://192.168.40.1:9090.

import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BRIDGE_ADDRESS, curlInNetns } from './cluster-lab.ts';
import { AGENT_METRICS_PORT } from './probes.ts';
import { onProcessExit, withPdeathsig } from './process-guard.ts';
import { eventually, GiveUp } from './support.ts';

export const PROMETHEUS_BIN = '/usr/bin/prometheus';
export const PROMETHEUS_PORT = 9090;
export const PROMETHEUS_INSTALL_HINT = 'apt-get install -y prometheus (or run scripts/setup.sh)';

export interface PrometheusOptions {
  /** The lab's network namespace. */
  netns: string;
  /** node name -> its address (the agent listens on ADDRESS:9477). */
  targets: Readonly<Record<string, string>>;
  /** A directory for the config, the TSDB and the log. */
  dir: string;
  /** Default 2s. */
  scrapeInterval?: string;
}

export interface PromSample {
  metric: Record<string, string>;
  value: number;
}

export class Prometheus {
  readonly netns: string;
  readonly url: string;
  readonly dir: string;
  readonly log: string;
  private readonly child: ChildProcess;
  private readonly unregister: () => void;
  private exited = false;

  constructor(netns: string, dir: string, log: string, child: ChildProcess) {
    this.netns = netns;
    this.dir = dir;
    this.log = log;
    this.url = `http://${BRIDGE_ADDRESS}:${PROMETHEUS_PORT}`;
    this.child = child;
    child.once('exit', () => {
      this.exited = true;
    });
    this.unregister = onProcessExit(() => {
      if (!this.exited) child.kill('SIGKILL');
    });
  }

  /** GET url path (with query parameters) from inside the namespace; the body, or an error. */
  get(path: string, params: Record<string, string> = {}): Promise<string> {
    return curlInNetns(this.netns, `${this.url}${path}`, params);
  }

  /** An instant query; the result vector with values as numbers. */
  async query(promql: string): Promise<PromSample[]> {
    const body = JSON.parse(await this.get('/api/v1/query', { query: promql })) as {
      status: string;
      error?: string;
      data?: { resultType: string; result: Array<{ metric: Record<string, string>; value: [number, string] }> };
    };
    if (body.status !== 'success' || body.data === undefined)
      throw new Error(`query ${promql}: ${body.error ?? 'no data'}`);
    if (body.data.resultType !== 'vector') throw new Error(`query ${promql}: a ${body.data.resultType}, not a vector`);
    return body.data.result.map((s) => ({ metric: s.metric, value: Number(s.value[1]) }));
  }

  /** node label -> value of a query whose samples carry the `node` label. */
  async byNode(promql: string): Promise<Record<string, number>> {
    return Object.fromEntries((await this.query(promql)).map((s) => [s.metric.node ?? '', s.value]));
  }

  /** The scrape targets' health, node -> "up" | "down" | "unknown". */
  async targetHealth(): Promise<Record<string, string>> {
    const body = JSON.parse(await this.get('/api/v1/targets')) as {
      data: { activeTargets: Array<{ labels: Record<string, string>; health: string }> };
    };
    return Object.fromEntries(body.data.activeTargets.map((t) => [t.labels.node ?? '', t.health]));
  }

  /** SIGTERM, SIGKILL after 5 s; resolves when it is gone. */
  async stop(): Promise<void> {
    if (!this.exited) {
      const gone = new Promise((r) => this.child.once('exit', r));
      this.child.kill('SIGTERM');
      const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000);
      await gone;
      clearTimeout(timer);
    }
    this.unregister();
  }
}

export function requirePrometheus(): void {
  if (!existsSync(PROMETHEUS_BIN)) throw new Error(`no ${PROMETHEUS_BIN}: ${PROMETHEUS_INSTALL_HINT}`);
}

/** The prometheus.yml: one job, ipip-operator, a target per node with its `node` label. */
export function prometheusConfig(targets: Readonly<Record<string, string>>, scrapeInterval = '2s'): string {
  const lines = [
    'global:',
    `  scrape_interval: ${scrapeInterval}`,
    `  evaluation_interval: ${scrapeInterval}`,
    'scrape_configs:',
    '  - job_name: ipip-operator',
    '    static_configs:',
    '      - targets:',
    ...Object.values(targets).map((a) => `          - '${a}:${AGENT_METRICS_PORT}'`),
    '    relabel_configs:',
    // One rule per node: its address becomes the `node` label.
    ...Object.entries(targets).flatMap(([node, address]) => [
      '      - source_labels: [__address__]',
      `        regex: '${address.replace(/\./g, '\\.')}:${AGENT_METRICS_PORT}'`,
      '        target_label: node',
      `        replacement: '${node}'`,
    ]),
  ];
  return `${lines.join('\n')}\n`;
}

/** Starts Prometheus in the namespace and resolves once it answers /-/ready. */
export async function startPrometheus(opts: PrometheusOptions): Promise<Prometheus> {
  requirePrometheus();
  const dir = join(opts.dir, 'prometheus');
  mkdirSync(join(dir, 'data'), { recursive: true });
  const config = join(dir, 'prometheus.yml');
  writeFileSync(config, prometheusConfig(opts.targets, opts.scrapeInterval));
  const log = join(dir, 'prometheus.log');
  const fd = openSync(log, 'a');
  const [cmd, args] = withPdeathsig('ip', [
    'netns',
    'exec',
    opts.netns,
    PROMETHEUS_BIN,
    `--config.file=${config}`,
    `--storage.tsdb.path=${join(dir, 'data')}`,
    `--web.listen-address=${BRIDGE_ADDRESS}:${PROMETHEUS_PORT}`,
    '--storage.tsdb.retention.time=1d',
  ]);
  const child = spawn(cmd, args, { stdio: ['ignore', fd, fd] });
  closeSync(fd);
  const prom = new Prometheus(opts.netns, dir, log, child);
  try {
    await eventually(
      'prometheus ready (/-/ready)',
      async () => {
        if (child.exitCode !== null || child.signalCode !== null)
          throw new GiveUp(new Error(`prometheus exited (${child.exitCode ?? child.signalCode})`));
        await prom.get('/-/ready');
        return true;
      },
      { timeoutMs: 60_000, intervalMs: 300 },
    );
    return prom;
  } catch (error) {
    await prom.stop();
    throw new Error(
      `${(error as Error).message}; log ${log}:\n${readFileSync(log, 'utf8').split('\n').slice(-20).join('\n')}`,
    );
  }
}
