// The agent's HTTP endpoint: /metrics for Prometheus, /healthz and /readyz for the kubelet's
// probes, on one server (node:http; nothing here needs a framework).

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { InputError } from '../api/manifest.ts';
import type { AgentMetrics } from './metrics.ts';

// Not an import of node:http, whose ES module face loads undici (see kube/client.ts).
const { createServer } = process.getBuiltinModule('node:http');

export const DEFAULT_METRICS_PORT = 9477;

export interface ListenAddress {
  /** undefined: every interface (IPv6 and IPv4 where the host has both). */
  host?: string;
  port: number;
}

/**
 * "HOST:PORT", ":PORT" or "[IPV6]:PORT"; port 0 picks a free one. The port is split off at
 * the last colon, so a bare IPv6 address is refused rather than misread.
 */
export function parseListenAddress(text: string): ListenAddress {
  const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]\s]*)):([0-9]{1,5})$/.exec(text);
  const port = Number(match?.[3]);
  if (match === null || port > 65535) {
    throw new InputError(`listen address must be HOST:PORT or :PORT, got ${JSON.stringify(text)}`);
  }
  const host = match[1] ?? match[2];
  return host === undefined || host === '' ? { port } : { host, port };
}

/**
 * A probe's answer: true is healthy/ready; false or a string (the reason) is not. Written
 * as a function so the server always shows the current state.
 */
export type ProbeCheck = () => boolean | string;

export interface HttpLog {
  info(message: string, fields?: Record<string, unknown>): unknown;
  warn(message: string, fields?: Record<string, unknown>): unknown;
}

export interface HttpServerOptions {
  /** As parseListenAddress reads it. */
  address: string;
  /** Without it /metrics is 404. */
  metrics?: AgentMetrics;
  /** Without them /readyz and /healthz are 404: a metrics-only server, probes served elsewhere. */
  isReady?: ProbeCheck;
  isHealthy?: ProbeCheck;
  log: HttpLog;
}

export interface RunningHttpServer {
  /** The bound port (useful with port 0). */
  port: number;
  close(): Promise<void>;
}

const TEXT = 'text/plain; charset=utf-8';

function send(
  res: ServerResponse,
  status: number,
  contentType: string,
  body: string,
  headers: Record<string, string> = {},
): void {
  res.writeHead(status, { 'Content-Type': contentType, 'Content-Length': Buffer.byteLength(body), ...headers });
  // For HEAD, node:http sends the headers and drops the body.
  res.end(body);
}

function answerProbe(res: ServerResponse, check: ProbeCheck, notOk: string): void {
  let verdict: boolean | string;
  try {
    verdict = check();
  } catch (error) {
    verdict = `check failed: ${error instanceof Error ? error.message : String(error)}`;
  }
  if (verdict === true) send(res, 200, TEXT, 'ok\n');
  else send(res, 503, TEXT, `${verdict === false || verdict === '' ? notOk : verdict}\n`);
}

export async function startHttpServer(options: HttpServerOptions): Promise<RunningHttpServer> {
  const { host, port } = parseListenAddress(options.address);
  const { metrics, isReady, isHealthy, log } = options;

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      send(res, 405, TEXT, 'method not allowed\n', { Allow: 'GET, HEAD' });
      return;
    }
    // Only the path matters; a query string (?foo) does not change the answer.
    const path = new URL(req.url ?? '/', 'http://agent').pathname;
    if (path === '/healthz' && isHealthy !== undefined) answerProbe(res, isHealthy, 'not healthy');
    else if (path === '/readyz' && isReady !== undefined) answerProbe(res, isReady, 'not ready');
    else if (path === '/metrics' && metrics !== undefined) send(res, 200, metrics.contentType, await metrics.metrics());
    else send(res, 404, TEXT, 'not found\n');
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      // A failing collector must not take the agent down; the scrape fails and says why.
      const message = error instanceof Error ? error.message : String(error);
      log.warn('http request failed', { path: req.url, error: message });
      if (!res.headersSent) send(res, 500, TEXT, `${message}\n`);
      else res.destroy();
    });
  });

  await new Promise<void>((resolveListen, reject) => {
    server.once('error', reject);
    server.listen({ host, port }, () => {
      server.off('error', reject);
      resolveListen();
    });
  });
  // After listening, an error (say, out of file descriptors on accept) is logged: with no
  // listener node would throw it and end the agent.
  server.on('error', (error) => log.warn('http server error', { address: options.address, error: error.message }));
  const bound = (server.address() as AddressInfo).port;
  log.info('http server listening', {
    address: options.address,
    port: bound,
    metrics: metrics !== undefined,
    probes: isReady !== undefined || isHealthy !== undefined,
  });

  return {
    port: bound,
    close: () =>
      new Promise<void>((resolveClose, reject) => {
        server.close((error) => (error === undefined ? resolveClose() : reject(error)));
        // Prometheus keeps connections open between scrapes; do not wait for them.
        server.closeAllConnections();
      }),
  };
}
