// The agent's HTTP endpoint as Prometheus and the kubelet's probes see it, on a real socket.

import assert from 'node:assert/strict';
import { request } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { InputError } from '../../src/api/manifest.ts';
import { DEFAULT_METRICS_PORT, parseListenAddress, startHttpServer } from '../../src/report/http.ts';
import type { RunningHttpServer } from '../../src/report/http.ts';
import { AgentMetrics } from '../../src/report/metrics.ts';

const quiet = { info: () => {}, warn: () => {} };

interface Answer {
  status: number;
  contentType: string | undefined;
  allow: string | undefined;
  body: string;
}

function call(port: number, method: string, path: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method, path }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        body += chunk;
      });
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          contentType: res.headers['content-type'],
          allow: res.headers.allow,
          body,
        }),
      );
    });
    req.on('error', reject);
    req.end();
  });
}

describe('agent HTTP server', () => {
  let server: RunningHttpServer;
  let ready: boolean | string = 'waiting for the first reconcile';
  let healthy: boolean | string = true;
  const metrics = new AgentMetrics();

  before(async () => {
    metrics.recordReconcile('success', 0.01);
    server = await startHttpServer({
      address: '127.0.0.1:0',
      metrics,
      isReady: () => ready,
      isHealthy: () => healthy,
      log: quiet,
    });
  });
  after(() => server.close());

  test('port 0 binds a free port', () => {
    assert.ok(server.port > 0);
  });

  test('/metrics: the Prometheus text format with our series', async () => {
    const answer = await call(server.port, 'GET', '/metrics');
    assert.equal(answer.status, 200);
    assert.match(answer.contentType ?? '', /^text\/plain; version=0\.0\.4/);
    assert.match(answer.body, /^ipip_operator_reconcile_total\{result="success"\} 1$/m);
  });

  test('/readyz answers 503 with the reason until ready, then 200 ok', async () => {
    ready = 'waiting for the first reconcile';
    assert.deepEqual(await call(server.port, 'GET', '/readyz'), {
      status: 503,
      contentType: 'text/plain; charset=utf-8',
      allow: undefined,
      body: 'waiting for the first reconcile\n',
    });
    ready = true;
    assert.deepEqual(await call(server.port, 'GET', '/readyz'), {
      status: 200,
      contentType: 'text/plain; charset=utf-8',
      allow: undefined,
      body: 'ok\n',
    });
  });

  test('/healthz: 200 ok; false gives a generic reason; a throwing check is a 503 with its message; each endpoint only where configured', async () => {
    healthy = true;
    assert.equal((await call(server.port, 'GET', '/healthz?verbose')).body, 'ok\n');
    healthy = false;
    const unhealthy = await call(server.port, 'GET', '/healthz');
    assert.deepEqual([unhealthy.status, unhealthy.body], [503, 'not healthy\n']);
    const throwing = await startHttpServer({
      address: '127.0.0.1:0',
      isReady: () => true,
      log: quiet,
      isHealthy: () => {
        throw new Error('watch state unknown');
      },
    });
    try {
      const answer = await call(throwing.port, 'GET', '/healthz');
      assert.deepEqual([answer.status, answer.body], [503, 'check failed: watch state unknown\n']);
      // Without metrics there is no /metrics.
      assert.equal((await call(throwing.port, 'GET', '/metrics')).status, 404);
    } finally {
      await throwing.close();
    }
    const metricsOnly = await startHttpServer({ address: '127.0.0.1:0', metrics, log: quiet });
    try {
      assert.deepEqual(
        [
          (await call(metricsOnly.port, 'GET', '/metrics')).status,
          (await call(metricsOnly.port, 'GET', '/healthz')).status,
          (await call(metricsOnly.port, 'GET', '/readyz')).status,
        ],
        [200, 404, 404],
      );
    } finally {
      await metricsOnly.close();
    }
    healthy = true;
  });

  test('HEAD is answered like GET, without a body', async () => {
    const answer = await call(server.port, 'HEAD', '/healthz');
    assert.deepEqual([answer.status, answer.body], [200, '']);
  });

  test('unknown paths are 404; other methods are 405 naming the allowed ones', async () => {
    assert.equal((await call(server.port, 'GET', '/')).status, 404);
    assert.equal((await call(server.port, 'GET', '/metricsx')).status, 404);
    const post = await call(server.port, 'POST', '/metrics');
    assert.deepEqual([post.status, post.allow], [405, 'GET, HEAD']);
  });

  test('a port in use is an error from startHttpServer, not a crash', async () => {
    await assert.rejects(
      startHttpServer({ address: `127.0.0.1:${server.port}`, isReady: () => true, isHealthy: () => true, log: quiet }),
      /EADDRINUSE/,
    );
  });
});

describe('parseListenAddress', () => {
  test('HOST:PORT, :PORT (every interface), [IPv6]:PORT', () => {
    assert.deepEqual(parseListenAddress('127.0.0.1:9477'), { host: '127.0.0.1', port: 9477 });
    assert.deepEqual(parseListenAddress('localhost:0'), { host: 'localhost', port: 0 });
    assert.deepEqual(parseListenAddress(`:${DEFAULT_METRICS_PORT}`), { port: 9477 });
    assert.deepEqual(parseListenAddress('[::1]:8080'), { host: '::1', port: 8080 });
    assert.deepEqual(parseListenAddress('[::]:65535'), { host: '::', port: 65535 });
  });

  test('anything else is an InputError that says what is expected', () => {
    for (const bad of [
      '',
      '9477',
      ':',
      'host:',
      ':65536',
      ':-1',
      ':94a',
      '::1:9477',
      'host:80:80',
      '[::1]',
      ' :9477',
      'a b:1',
    ]) {
      assert.throws(
        () => parseListenAddress(bad),
        (error: unknown) =>
          error instanceof InputError &&
          error.message === `listen address must be HOST:PORT or :PORT, got ${JSON.stringify(bad)}`,
        `refused: ${JSON.stringify(bad)}`,
      );
    }
  });
});
