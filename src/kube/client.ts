// The only code that talks to the Kubernetes API server: about ten endpoints (lists,
// watches, server-side apply, Events, Leases) over node:https with one keep-alive pool.
// Every call has a timeout, reports to an observer (for metrics), and throws ApiError with
// the HTTP status, so callers can tell "gone" (404), "expired" (410) and "conflict" (409)
// from "the server is away" (status 0).
//
// Not @kubernetes/client-node: importing it costs a node agent about 80 MiB of RSS and a
// second of start-up (1,226 modules, every generated model kept by its serializer, its
// source text held by V8), more than the agent's own work at 1,000 tunnels (bench/RESULTS.md,
// "Memory and start-up"); a tree-shaken bundle of it still costs 52 MiB. What the agent needs
// of the API is small and stable (the paths below are Kubernetes' v1 API).

import { readFileSync } from 'node:fs';
import type { Agent, IncomingMessage } from 'node:http';
import { API_GROUP, KIND, NODE_KIND } from '../api/types.ts';
import type { IpipNode, IpipTunnel, IpipTunnelStatus, NodeTunnelStatus, ObjectMeta } from '../api/types.ts';
import { loadClusterAccess, SERVICE_ACCOUNT_DIR } from './config.ts';
import type { ClusterAccess } from './config.ts';

// node:http and node:https as CommonJS exports (process.getBuiltinModule), not imports: an
// import of node:http makes its ES module face, which reads every export, and the getters of
// WebSocket, CloseEvent and MessageEvent load undici (Node's fetch), which the agent never
// uses: 1,700 page faults and 7 MiB of RSS at start-up (nodejs/node#59686; bench/RESULTS.md).
const { Agent: HttpAgent, request: httpRequest } = process.getBuiltinModule('node:http');
const { Agent: HttpsAgent, request: httpsRequest } = process.getBuiltinModule('node:https');

export const TUNNEL_VERSION = 'v1alpha1';
export const TUNNEL_PLURAL = 'ipiptunnels';
export const NODE_PLURAL = 'ipipnodes';

/** A failed API call: `status` is the HTTP status, 0 when no answer came (network, timeout). */
export class ApiError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

export type ApiObserver = (verb: string, ok: boolean) => void;

export interface ClientOptions {
  /** A kubeconfig file; without it: $KUBECONFIG, then the in-cluster ServiceAccount, then ~/.kube/config. */
  kubeconfig?: string;
  /** Per-request timeout for everything but watches: for the answer to start, then between its chunks. */
  timeoutMs?: number;
  onRequest?: ApiObserver;
}

/** One page of a list: the items and the resourceVersion to watch from. */
export interface ListPage<T> {
  items: T[];
  resourceVersion: string;
}

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';

export interface WatchHandlers {
  onEvent(type: WatchEventType, object: Record<string, unknown>): void;
  /** The watch ended: err undefined when the server closed it normally (timeoutSeconds). */
  onDone(err: unknown): void;
}

/** The part of a Node the agent reads. */
export interface KubeNode {
  metadata?: { name?: string; uid?: string; [key: string]: unknown };
  status?: { addresses?: { type: string; address: string }[] };
}

/** A coordination.k8s.io/v1 Lease; times are MicroTime strings (microTime()). */
export interface Lease {
  apiVersion?: string;
  kind?: string;
  metadata?: { name?: string; namespace?: string; resourceVersion?: string; [key: string]: unknown };
  spec?: {
    holderIdentity?: string;
    leaseDurationSeconds?: number;
    acquireTime?: string;
    renewTime?: string;
    leaseTransitions?: number;
  };
}

/** A core/v1 Event as the agent writes it; times are RFC 3339 strings to the second (eventTime()). */
export interface KubeEvent {
  metadata: { name: string; namespace: string };
  involvedObject: { apiVersion: string; kind: string; name: string; uid?: string };
  type: string;
  reason: string;
  message: string;
  source: { component: string; host: string };
  reportingComponent: string;
  reportingInstance: string;
  firstTimestamp: string;
  lastTimestamp: string;
  count: number;
}

/** A Node as the agent needs it: nothing else of the (large) Node object is kept. */
export interface NodeAddresses {
  name: string;
  /** For the owner reference of the node's IpipNode, so it goes when the Node goes. */
  uid?: string;
  internalIP?: string;
}

/**
 * What the agent keeps of an IpipTunnel it reads (list, watch, the answer of a write):
 * apiVersion, kind, spec, status and the metadata fields of ObjectMeta. managedFields
 * (an entry per writer: kubectl, every node, the aggregate) and kubectl's
 * last-applied-configuration annotation are larger than the spec and status together,
 * nothing here reads them, and every agent caches every tunnel of the cluster.
 */
export function tunnelOf(object: IpipTunnel): IpipTunnel {
  const { name, uid, generation, resourceVersion, creationTimestamp, deletionTimestamp } = object.metadata;
  const metadata: ObjectMeta = { name };
  if (uid !== undefined) metadata.uid = uid;
  if (generation !== undefined) metadata.generation = generation;
  if (resourceVersion !== undefined) metadata.resourceVersion = resourceVersion;
  if (creationTimestamp !== undefined) metadata.creationTimestamp = creationTimestamp;
  if (deletionTimestamp !== undefined) metadata.deletionTimestamp = deletionTimestamp;
  const { apiVersion, kind, spec, status } = object;
  return { apiVersion, kind, metadata, spec, ...(status === undefined ? {} : { status }) };
}

/** The first IPv4 InternalIP of a Node, which is what the underlay falls back to. */
export function nodeAddressesOf(node: KubeNode): NodeAddresses {
  const name = node.metadata?.name ?? '';
  const internal = node.status?.addresses?.find(
    (a) => a.type === 'InternalIP' && /^\d+\.\d+\.\d+\.\d+$/.test(a.address),
  );
  const uid = node.metadata?.uid;
  return {
    name,
    ...(uid === undefined ? {} : { uid }),
    ...(internal === undefined ? {} : { internalIP: internal.address }),
  };
}

/** What the agent keeps of an IpipNode: no managedFields, labels or annotations. */
export function ipipNodeOf(object: IpipNode): IpipNode {
  const { name, uid, resourceVersion } = object.metadata;
  const metadata: IpipNode['metadata'] = { name };
  if (uid !== undefined) metadata.uid = uid;
  if (resourceVersion !== undefined) metadata.resourceVersion = resourceVersion;
  const node: IpipNode = { apiVersion: object.apiVersion, kind: object.kind, metadata };
  if (object.tunnels !== undefined) node.tunnels = object.tunnels;
  if (object.readySummary !== undefined) node.readySummary = object.readySummary;
  return node;
}

/** The message of a failed answer: the Status object's, else the body's first line, else the status line. */
function failureMessage(status: number, body: string): string {
  try {
    const parsed = JSON.parse(body) as { message?: unknown };
    if (typeof parsed.message === 'string' && parsed.message !== '') return parsed.message;
  } catch {
    /* not JSON: the text itself */
  }
  const line = body.split('\n', 1)[0]!.trim().slice(0, 200);
  return line === '' ? `HTTP ${status}` : `HTTP ${status}: ${line}`;
}

/** A request that got no answer: what happened, with the socket's error code when there is one. */
function noAnswer(what: string, error: unknown): ApiError {
  const e = error as { name?: string; code?: string; message?: string };
  if (e.name === 'TimeoutError' || e.name === 'AbortError')
    return new ApiError(0, `${what}: no answer in time (${e.message ?? e.name})`);
  return new ApiError(0, `${what}: ${e.message ?? String(error)}${e.code === undefined ? '' : ` (${e.code})`}`);
}

function query(params: Record<string, string | number | boolean | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined) q.set(k, String(v));
  const text = q.toString();
  return text === '' ? '' : `?${text}`;
}

const enc = encodeURIComponent;
const APPLY = 'application/apply-patch+yaml';
const MERGE = 'application/merge-patch+json';
/** Sockets per client: the aggregate writer keeps 8 requests in flight, Events 2, three watches hold one each. */
const MAX_SOCKETS = 24;

export class KubeClient {
  readonly server: string;
  private readonly access: ClusterAccess;
  /** The server's origin and path (a proxy may serve the API under one), without a trailing slash. */
  private readonly base: string;
  private readonly timeoutMs: number;
  private readonly observe: ApiObserver;
  /**
   * One pool of kept-alive connections for every request, watches included: a TLS
   * handshake per request was the agents' top CPU cost at 1,000 tunnels in UML.
   */
  private readonly agent: Agent;
  private readonly send: typeof httpRequest;

  constructor(options: ClientOptions = {}) {
    this.access = loadClusterAccess(options.kubeconfig);
    const url = new URL(this.access.server);
    this.server = this.access.server;
    this.base = `${url.origin}${url.pathname.replace(/\/+$/, '')}`;
    this.timeoutMs = options.timeoutMs ?? 15_000;
    this.observe = options.onRequest ?? (() => {});
    const pool = { keepAlive: true, maxSockets: MAX_SOCKETS, maxFreeSockets: 8 };
    if (url.protocol === 'https:') {
      const a = this.access;
      this.agent = new HttpsAgent({
        ...pool,
        ...(a.ca === undefined ? {} : { ca: a.ca }),
        ...(a.clientCert === undefined ? {} : { cert: a.clientCert, key: a.clientKey }),
        ...(a.tlsServerName === undefined ? {} : { servername: a.tlsServerName }),
        rejectUnauthorized: !a.insecure,
      });
      this.send = httpsRequest as typeof httpRequest;
    } else {
      this.agent = new HttpAgent(pool);
      this.send = httpRequest;
    }
  }

  /** The namespace of the pod we run in, when in-cluster; undefined otherwise. */
  static podNamespace(): string | undefined {
    try {
      return readFileSync(`${SERVICE_ACCOUNT_DIR}/namespace`, 'utf8').trim() || undefined;
    } catch {
      return undefined;
    }
  }

  /** Closes the kept-alive connections (a stopped agent leaves no socket open). */
  close(): void {
    this.agent.destroy();
  }

  private headers(contentType: string | undefined, length: number | undefined): Record<string, string> {
    const headers: Record<string, string> = { Accept: 'application/json', 'User-Agent': 'ipip-operator' };
    const token = this.access.token();
    if (token !== undefined) headers.Authorization = `Bearer ${token}`;
    if (contentType !== undefined) headers['Content-Type'] = contentType;
    if (length !== undefined) headers['Content-Length'] = String(length);
    return headers;
  }

  /** Starts one request; `answer` gets the response, `failed` a request that got none. */
  private open(
    method: string,
    path: string,
    body: string | undefined,
    contentType: string | undefined,
    signal: AbortSignal,
    answer: (response: IncomingMessage) => void,
    failed: (error: unknown) => void,
  ) {
    const payload = body === undefined ? undefined : Buffer.from(body);
    const req = this.send(
      `${this.base}${path}`,
      { method, agent: this.agent, headers: this.headers(contentType, payload?.length), signal },
      answer,
    );
    req.on('error', failed);
    req.end(payload);
    return req;
  }

  /**
   * One request, counted by verb and result, answered with the parsed body. `answers` are
   * HTTP statuses that are an answer for this caller, not a failure (a Lease that does not
   * exist yet): still thrown as ApiError, but counted as a success, so the error rate shows
   * only real failures.
   */
  private call<T>(
    verb: string,
    what: string,
    method: string,
    path: string,
    options: { body?: unknown; contentType?: string; answers?: readonly number[] } = {},
  ): Promise<T> {
    const answers = options.answers ?? [];
    return new Promise<T>((resolve, reject) => {
      // The timeout is for silence, not for the whole call: restarted by every chunk of
      // the answer. A list of 500 IpipTunnels takes more than 15 s to arrive in a busy
      // UML guest; with a deadline on the whole call, every relist after a watch the API
      // server had closed was cut off, retried and cut off again, and the agent never
      // caught up (bench/cluster-scale.ts, 1,000 tunnels). A timer of our own, cleared with
      // the answer, rather than AbortSignal.timeout: that one's timer lives its 15 s
      // whatever happens, and its signal keeps the finished request reachable until then
      // (a burst of 2,000 writes kept 2,000 of them).
      const abort = new AbortController();
      const timer = setTimeout(
        () => abort.abort(new DOMException(`${this.timeoutMs / 1000} s`, 'TimeoutError')),
        this.timeoutMs,
      );
      const fail = (error: ApiError) => {
        clearTimeout(timer);
        this.observe(verb, answers.includes(error.status));
        reject(error);
      };
      // Aborted by the timer: the timeout is the cause, not the AbortError http reports.
      const failed = (error: unknown) => fail(noAnswer(what, abort.signal.aborted ? abort.signal.reason : error));
      const body = options.body === undefined ? undefined : JSON.stringify(options.body);
      const contentType = options.contentType ?? (body === undefined ? undefined : 'application/json');
      this.open(
        method,
        path,
        body,
        contentType,
        abort.signal,
        (response) => {
          const chunks: Buffer[] = [];
          response.on('data', (chunk: Buffer) => {
            timer.refresh();
            chunks.push(chunk);
          });
          response.on('error', failed);
          response.on('end', () => {
            clearTimeout(timer);
            const text = Buffer.concat(chunks).toString('utf8');
            const status = response.statusCode ?? 0;
            if (status < 200 || status > 299)
              return fail(new ApiError(status, `${what}: ${failureMessage(status, text)}`));
            let parsed: unknown;
            try {
              parsed = text === '' ? undefined : JSON.parse(text);
            } catch (error) {
              return fail(new ApiError(0, `${what}: the answer is not JSON: ${(error as Error).message}`));
            }
            this.observe(verb, true);
            resolve(parsed as T);
          });
        },
        failed,
      );
    });
  }

  /** A list in pages of 500 (a big cluster's list is not one huge response), as one call. */
  private async listPaged<T, K>(what: string, path: string, keep: (object: T) => K): Promise<ListPage<K>> {
    const items: K[] = [];
    let next: string | undefined;
    let resourceVersion = '';
    do {
      const list = await this.call<{ items?: T[]; metadata?: { resourceVersion?: string; continue?: string } }>(
        'list',
        what,
        'GET',
        `${path}${query({ limit: 500, continue: next })}`,
      );
      for (const item of list.items ?? []) items.push(keep(item));
      resourceVersion = list.metadata?.resourceVersion ?? '';
      next = list.metadata?.continue || undefined;
    } while (next !== undefined);
    return { items, resourceVersion };
  }

  // --- IpipTunnels and IpipNodes ---

  private ours(plural: string, name?: string, subresource?: string): string {
    const base = `/apis/${API_GROUP}/${TUNNEL_VERSION}/${plural}`;
    return name === undefined ? base : `${base}/${enc(name)}${subresource === undefined ? '' : `/${subresource}`}`;
  }

  listTunnels(): Promise<ListPage<IpipTunnel>> {
    return this.listPaged(`list ${TUNNEL_PLURAL}`, this.ours(TUNNEL_PLURAL), tunnelOf);
  }

  watchTunnels(resourceVersion: string, handlers: WatchHandlers): Promise<() => void> {
    return this.watch(this.ours(TUNNEL_PLURAL), resourceVersion, handlers);
  }

  /** Server-side apply of the status subresource as `fieldManager` (the aggregate's). */
  async applyTunnelStatus(name: string, fieldManager: string, status: IpipTunnelStatus): Promise<IpipTunnel> {
    const body = { apiVersion: `${API_GROUP}/${TUNNEL_VERSION}`, kind: KIND, metadata: { name }, status };
    // 404: deleted meanwhile, nothing left to report on.
    const path = `${this.ours(TUNNEL_PLURAL, name, 'status')}${query({ fieldManager, force: true })}`;
    return tunnelOf(
      await this.call<IpipTunnel>('apply', `apply status of ipiptunnel ${name}`, 'PATCH', path, {
        body,
        contentType: APPLY,
        answers: [404],
      }),
    );
  }

  listIpipNodes(): Promise<ListPage<IpipNode>> {
    return this.listPaged(`list ${NODE_PLURAL}`, this.ours(NODE_PLURAL), ipipNodeOf);
  }

  watchIpipNodes(resourceVersion: string, handlers: WatchHandlers): Promise<() => void> {
    return this.watch(this.ours(NODE_PLURAL), resourceVersion, handlers);
  }

  /**
   * Server-side apply of this node's whole IpipNode as `fieldManager` (created if it does
   * not exist). The node's agent is its only writer; a tunnel entry it stops applying is
   * removed.
   */
  async applyIpipNode(
    name: string,
    fieldManager: string,
    tunnels: NodeTunnelStatus[],
    readySummary: string,
    owner: { uid: string } | undefined,
  ): Promise<IpipNode> {
    const metadata: IpipNode['metadata'] = { name };
    if (owner !== undefined) metadata.ownerReferences = [{ apiVersion: 'v1', kind: 'Node', name, uid: owner.uid }];
    const body: IpipNode = {
      apiVersion: `${API_GROUP}/${TUNNEL_VERSION}`,
      kind: NODE_KIND,
      metadata,
      tunnels,
      readySummary,
    };
    const path = `${this.ours(NODE_PLURAL, name)}${query({ fieldManager, force: true })}`;
    return ipipNodeOf(
      await this.call<IpipNode>('apply', `apply ipipnode ${name}`, 'PATCH', path, { body, contentType: APPLY }),
    );
  }

  // --- Nodes ---

  listNodes(): Promise<ListPage<NodeAddresses>> {
    return this.listPaged('list nodes', '/api/v1/nodes', nodeAddressesOf);
  }

  watchNodes(resourceVersion: string, handlers: WatchHandlers): Promise<() => void> {
    return this.watch('/api/v1/nodes', resourceVersion, handlers);
  }

  // --- Watches ---

  /**
   * A watch from `resourceVersion` with bookmarks: one JSON event per line. The server ends
   * it after 5-10 minutes (spread, so many agents do not reconnect at once); a silent
   * connection is dropped after 2 minutes without a byte (bookmarks arrive about every
   * minute). Resolves at once with the function that stops it; how it ends goes to onDone,
   * once, and nothing is delivered after it is stopped.
   */
  async watch(path: string, resourceVersion: string, handlers: WatchHandlers): Promise<() => void> {
    const timeoutSeconds = 300 + Math.floor(Math.random() * 300);
    const what = `watch ${path}`;
    const stop = new AbortController();
    let ended = false;
    const end = (err: ApiError | undefined) => {
      if (ended) return;
      ended = true;
      this.observe('watch', err === undefined);
      handlers.onDone(err);
      req.destroy();
    };
    const req = this.open(
      'GET',
      `${path}${query({ watch: true, resourceVersion, allowWatchBookmarks: true, timeoutSeconds })}`,
      undefined,
      undefined,
      stop.signal,
      (response) => {
        const status = response.statusCode ?? 0;
        response.setEncoding('utf8');
        let pending = '';
        if (status !== 200) {
          // Refused (403, 410 at connect, ...): the body is a Status object.
          response.on('data', (chunk: string) => (pending += chunk));
          response.on('end', () => end(new ApiError(status, `${what}: ${failureMessage(status, pending)}`)));
          return;
        }
        response.on('data', (chunk: string) => {
          pending += chunk;
          let newline = pending.indexOf('\n');
          while (newline >= 0 && !ended) {
            const line = pending.slice(0, newline);
            pending = pending.slice(newline + 1);
            newline = pending.indexOf('\n');
            if (line.trim() === '') continue;
            let event: { type?: WatchEventType; object?: Record<string, unknown> };
            try {
              event = JSON.parse(line) as typeof event;
            } catch (error) {
              return end(new ApiError(0, `${what}: an event that is not JSON: ${(error as Error).message}`));
            }
            if (event.type !== undefined && event.object !== undefined) handlers.onEvent(event.type, event.object);
          }
        });
        response.on('end', () => end(undefined));
        response.on('error', (error) => end(noAnswer(what, error)));
        // Cut mid-stream (the server went away, the 2-minute silence): no 'end' came first.
        response.on('close', () => end(new ApiError(0, `${what}: the connection was cut`)));
      },
      (error) => end(noAnswer(what, error)),
    );
    req.setTimeout(120_000, () => req.destroy(new Error('no data for 120 s')));
    return () => {
      ended = true;
      stop.abort();
    };
  }

  // --- Events ---

  createEvent(event: KubeEvent): Promise<KubeEvent> {
    const namespace = event.metadata.namespace;
    return this.call('create', 'create event', 'POST', `/api/v1/namespaces/${enc(namespace)}/events`, { body: event });
  }

  /** Counts a repeat of an earlier Event (merge patch of count and lastTimestamp), as client-go does. */
  async patchEventSeries(namespace: string, name: string, count: number, last: Date): Promise<void> {
    await this.call(
      'patch',
      `patch event ${name}`,
      'PATCH',
      `/api/v1/namespaces/${enc(namespace)}/events/${enc(name)}`,
      {
        body: { count, lastTimestamp: eventTime(last) },
        contentType: MERGE,
      },
    );
  }

  // --- Leases ---

  private leases(namespace: string, name?: string): string {
    const base = `/apis/coordination.k8s.io/v1/namespaces/${enc(namespace)}/leases`;
    return name === undefined ? base : `${base}/${enc(name)}`;
  }

  async getLease(namespace: string, name: string): Promise<Lease | undefined> {
    try {
      return await this.call<Lease>('get', `get lease ${namespace}/${name}`, 'GET', this.leases(namespace, name), {
        answers: [404],
      });
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) return undefined;
      throw error;
    }
  }

  createLease(lease: Lease): Promise<Lease> {
    const namespace = lease.metadata!.namespace!;
    // 409: another candidate created it first, the normal end of a race.
    return this.call('create', `create lease ${namespace}/${lease.metadata!.name}`, 'POST', this.leases(namespace), {
      body: lease,
      answers: [409],
    });
  }

  /** Replace with the lease's resourceVersion: 409 when someone else wrote it first (an answer, not a failure). */
  replaceLease(lease: Lease): Promise<Lease> {
    const namespace = lease.metadata!.namespace!;
    const name = lease.metadata!.name!;
    return this.call('update', `update lease ${namespace}/${name}`, 'PUT', this.leases(namespace, name), {
      body: lease,
      answers: [409],
    });
  }
}

/** Lease times are MicroTime: six fractional digits, which a plain Date does not print. */
export function microTime(date: Date): string {
  return date.toISOString().replace(/Z$/, '000Z');
}

/** Event times (firstTimestamp, lastTimestamp) are Time: RFC 3339 to the second. */
export function eventTime(date: Date): string {
  return date.toISOString().replace(/\.\d+Z$/, 'Z');
}
