// The API client's own timeout (src/kube/client.ts): a server that takes a connection and
// never answers gets the caller an ApiError naming what was asked, in the configured time,
// and nothing is left running. Not an API server: a socket that says nothing, the one fault
// the real API server in test/cluster cannot be made to show.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { ApiError, KubeClient } from '../../src/kube/client.ts';

const dir = mkdtempSync(join(tmpdir(), 'ipip-kube-client-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** A TCP server that answers each request with `reply` (a text, or a function that writes it), or never when undefined. */
async function server(reply: string | ((socket: Socket) => void) | undefined) {
  const sockets = new Set<Socket>();
  const s = createServer((socket) => {
    sockets.add(socket);
    socket.on('data', () => {
      if (typeof reply === 'function') reply(socket);
      else if (reply !== undefined) socket.write(reply);
    });
  });
  await new Promise<void>((done) => s.listen(0, '127.0.0.1', done));
  const kubeconfig = join(dir, `kubeconfig-${(s.address() as AddressInfo).port}`);
  writeFileSync(
    kubeconfig,
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'c', cluster: { server: `http://127.0.0.1:${(s.address() as AddressInfo).port}` } }],
      users: [{ name: 'u', user: { token: 't' } }],
      contexts: [{ name: 'x', context: { cluster: 'c', user: 'u' } }],
      'current-context': 'x',
    }),
  );
  const close = () => {
    for (const socket of sockets) socket.destroy();
    return new Promise<void>((done) => s.close(() => done()));
  };
  return { kubeconfig, close };
}

/** Answers 200 at once, then the body in `parts` pieces, one every `everyMs`. */
async function drippingServer(body: string, everyMs: number, parts: number) {
  const size = Math.ceil(body.length / parts);
  const pieces = Array.from({ length: parts }, (_, i) => body.slice(i * size, (i + 1) * size));
  return server((socket) => {
    socket.write(`HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`);
    const timer = setInterval(() => {
      const piece = pieces.shift();
      if (piece === undefined) clearInterval(timer);
      else socket.write(piece);
    }, everyMs);
    socket.on('close', () => clearInterval(timer));
  });
}

describe('KubeClient: every call has a timeout', () => {
  test('no answer: an ApiError naming the call, after the timeout', async () => {
    const silent = await server(undefined);
    const client = new KubeClient({ kubeconfig: silent.kubeconfig, timeoutMs: 300 });
    try {
      const started = performance.now();
      await assert.rejects(
        client.getLease('ipip-operator', 'lease'),
        (e: Error) => e instanceof ApiError && /no answer in time \(0\.3 s\)/.test(e.message),
      );
      assert.ok(performance.now() - started >= 290, 'not before the timeout');
    } finally {
      client.close();
      await silent.close();
    }
  });

  test('a slow answer that keeps coming is not cut off: the timeout is for silence', async () => {
    // Headers at once, then the body a byte every 150 ms for 1.2 s: four times the timeout in
    // all, never silent for half of it.
    const body = '{"kind":"Lease","metadata":{"name":"lease"}}';
    const dripped = await drippingServer(body, 150, 8);
    const client = new KubeClient({ kubeconfig: dripped.kubeconfig, timeoutMs: 300 });
    try {
      const started = performance.now();
      const lease = await client.getLease('ipip-operator', 'lease');
      assert.equal(lease?.metadata?.name, 'lease');
      assert.ok(performance.now() - started > 900, 'the answer took longer than the timeout');
    } finally {
      client.close();
      await dripped.close();
    }
  });

  test('an answer in time is the answer (a Lease that does not exist is undefined)', async () => {
    const answering = await server(
      'HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}',
    );
    const client = new KubeClient({ kubeconfig: answering.kubeconfig, timeoutMs: 300 });
    try {
      assert.equal(await client.getLease('ipip-operator', 'lease'), undefined);
    } finally {
      client.close();
      await answering.close();
    }
  });
});
