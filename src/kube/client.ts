// The only code that talks to the Kubernetes API server (@kubernetes/client-node). Every
// call has a timeout (the library sets none), reports to an observer (for metrics), and
// throws ApiError with the HTTP status, so callers can tell "gone" (404), "expired" (410)
// and "conflict" (409) from "the server is away" (status 0).

import { readFileSync } from 'node:fs';
import {
  ApiException,
  CoordinationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  Observable,
  PatchStrategy,
  V1MicroTime,
  Watch,
} from '@kubernetes/client-node';
import type {
  ConfigurationOptions,
  CoreV1Event,
  RequestContext,
  ResponseContext,
  V1Lease,
  V1Node,
} from '@kubernetes/client-node';
import { API_GROUP, KIND, NODE_KIND } from '../api/types.ts';
import type { IpipNode, IpipTunnel, IpipTunnelStatus, NodeTunnelStatus, ObjectMeta } from '../api/types.ts';

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
  /** Per-request timeout for everything but watches. */
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
export function nodeAddressesOf(node: Pick<V1Node, 'metadata' | 'status'>): NodeAddresses {
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

function loadConfig(kubeconfig: string | undefined): KubeConfig {
  const kc = new KubeConfig();
  if (kubeconfig !== undefined) kc.loadFromFile(kubeconfig);
  else if (process.env.KUBECONFIG) kc.loadFromDefault();
  else if (process.env.KUBERNETES_SERVICE_HOST) kc.loadFromCluster();
  else kc.loadFromDefault();
  if (kc.getCurrentCluster() === null) {
    throw new Error('no Kubernetes cluster configured: pass --kubeconfig, set KUBECONFIG, or run in a pod');
  }
  return kc;
}

/** Turns whatever the library threw into an ApiError with the status and the server's message. */
function toApiError(error: unknown, what: string): ApiError {
  if (error instanceof ApiError) return error;
  if (error instanceof ApiException) {
    let message = String(error.message);
    const body: unknown = error.body;
    if (typeof body === 'string') {
      try {
        message = (JSON.parse(body) as { message?: string }).message ?? message;
      } catch {
        /* not JSON: keep the library's message */
      }
    } else if (typeof body === 'object' && body !== null && 'message' in body)
      message = String((body as { message: unknown }).message);
    return new ApiError(error.code, `${what}: ${message}`);
  }
  const cause = (error as { cause?: { code?: string } }).cause?.code;
  return new ApiError(0, `${what}: ${(error as Error).message}${cause === undefined ? '' : ` (${cause})`}`);
}

export class KubeClient {
  readonly server: string;
  private readonly kc: KubeConfig;
  private readonly core: CoreV1Api;
  private readonly custom: CustomObjectsApi;
  private readonly coordination: CoordinationV1Api;
  private readonly timeoutMs: number;
  private readonly observe: ApiObserver;
  /**
   * The library builds a new undici Agent for every request (applySecurityAuthentication),
   * so every call paid a TLS handshake of its own: the first is kept and every request
   * goes through it, on its kept-alive connections (seen at 1000 tunnels: the agents' top
   * CPU cost in UML). Watches keep one of their own each.
   */
  private dispatcher: ReturnType<RequestContext['getDispatcher']>;

  constructor(options: ClientOptions = {}) {
    this.kc = loadConfig(options.kubeconfig);
    this.server = this.kc.getCurrentCluster()!.server;
    this.core = this.kc.makeApiClient(CoreV1Api);
    this.custom = this.kc.makeApiClient(CustomObjectsApi);
    this.coordination = this.kc.makeApiClient(CoordinationV1Api);
    this.timeoutMs = options.timeoutMs ?? 15_000;
    this.observe = options.onRequest ?? (() => {});
  }

  /** The namespace of the pod we run in, when in-cluster; undefined otherwise. */
  static podNamespace(): string | undefined {
    try {
      return readFileSync('/var/run/secrets/kubernetes.io/serviceaccount/namespace', 'utf8').trim() || undefined;
    } catch {
      return undefined;
    }
  }

  /** Request options: a timeout on every call, and a Content-Type for patches. */
  private options(contentType?: string): ConfigurationOptions {
    const timeoutMs = this.timeoutMs;
    const middleware = {
      pre: (ctx: RequestContext) => {
        this.dispatcher ??= ctx.getDispatcher();
        if (this.dispatcher !== undefined) ctx.setDispatcher(this.dispatcher);
        ctx.setSignal(AbortSignal.timeout(timeoutMs));
        if (contentType !== undefined) ctx.setHeaderParam('Content-Type', contentType);
        return new Observable(Promise.resolve(ctx));
      },
      post: (ctx: ResponseContext) => new Observable(Promise.resolve(ctx)),
    };
    return { middleware: [middleware], middlewareMergeStrategy: 'append' };
  }

  /**
   * One request, counted by verb and result. `answers` are HTTP statuses that are an
   * answer for this caller, not a failure (a Lease that does not exist yet): still thrown
   * as ApiError, but counted as a success, so the error rate shows only real failures.
   */
  private async call<T>(
    verb: string,
    what: string,
    request: () => Promise<T>,
    answers: readonly number[] = [],
  ): Promise<T> {
    try {
      const result = await request();
      this.observe(verb, true);
      return result;
    } catch (error) {
      const apiError = toApiError(error, what);
      this.observe(verb, answers.includes(apiError.status));
      throw apiError;
    }
  }

  /** A list in pages of 500 (a big cluster's list is not one huge response), as one call. */
  private async listPaged<T>(
    what: string,
    page: (params: {
      limit: number;
      _continue?: string;
    }) => Promise<{ items: T[]; resourceVersion: string; next: string | undefined }>,
  ): Promise<ListPage<T>> {
    const items: T[] = [];
    let next: string | undefined;
    let resourceVersion = '';
    do {
      const cont = next;
      const got = await this.call('list', what, () =>
        page(cont === undefined ? { limit: 500 } : { limit: 500, _continue: cont }),
      );
      items.push(...got.items);
      resourceVersion = got.resourceVersion;
      next = got.next || undefined;
    } while (next !== undefined);
    return { items, resourceVersion };
  }

  // --- IpipTunnels ---

  /** A list of one of our cluster-scoped kinds, in pages, each object slimmed by `keep`. */
  private listOurs<T>(plural: string, keep: (object: T) => T): Promise<ListPage<T>> {
    return this.listPaged(`list ${plural}`, async (page) => {
      const list = (await this.custom.listClusterCustomObject(
        { group: API_GROUP, version: TUNNEL_VERSION, plural, ...page },
        this.options(),
      )) as { items: T[]; metadata: { resourceVersion: string; continue?: string } };
      return {
        items: list.items.map(keep),
        resourceVersion: list.metadata.resourceVersion,
        next: list.metadata.continue,
      };
    });
  }

  private watchOurs(plural: string, resourceVersion: string, handlers: WatchHandlers): Promise<() => void> {
    return this.watch(`/apis/${API_GROUP}/${TUNNEL_VERSION}/${plural}`, resourceVersion, handlers);
  }

  listTunnels(): Promise<ListPage<IpipTunnel>> {
    return this.listOurs(TUNNEL_PLURAL, tunnelOf);
  }

  watchTunnels(resourceVersion: string, handlers: WatchHandlers): Promise<() => void> {
    return this.watchOurs(TUNNEL_PLURAL, resourceVersion, handlers);
  }

  /** Server-side apply of the status subresource as `fieldManager` (the aggregate's). */
  async applyTunnelStatus(name: string, fieldManager: string, status: IpipTunnelStatus): Promise<IpipTunnel> {
    const body = { apiVersion: `${API_GROUP}/${TUNNEL_VERSION}`, kind: KIND, metadata: { name }, status };
    return tunnelOf(
      (await this.call(
        'apply',
        `apply status of ipiptunnel ${name}`,
        () =>
          this.custom.patchClusterCustomObjectStatus(
            { group: API_GROUP, version: TUNNEL_VERSION, plural: TUNNEL_PLURAL, name, body, fieldManager, force: true },
            this.options(PatchStrategy.ServerSideApply),
          ),
        [404],
      )) as IpipTunnel,
    ); // 404: deleted meanwhile, nothing left to report on
  }

  // --- IpipNodes ---

  listIpipNodes(): Promise<ListPage<IpipNode>> {
    return this.listOurs(NODE_PLURAL, ipipNodeOf);
  }

  watchIpipNodes(resourceVersion: string, handlers: WatchHandlers): Promise<() => void> {
    return this.watchOurs(NODE_PLURAL, resourceVersion, handlers);
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
    return ipipNodeOf(
      (await this.call('apply', `apply ipipnode ${name}`, () =>
        this.custom.patchClusterCustomObject(
          { group: API_GROUP, version: TUNNEL_VERSION, plural: NODE_PLURAL, name, body, fieldManager, force: true },
          this.options(PatchStrategy.ServerSideApply),
        ),
      )) as IpipNode,
    );
  }

  // --- Nodes ---

  listNodes(): Promise<ListPage<NodeAddresses>> {
    return this.listPaged('list nodes', async (page) => {
      const list = await this.core.listNode(page, this.options());
      return {
        items: list.items.map(nodeAddressesOf),
        resourceVersion: list.metadata?.resourceVersion ?? '',
        next: list.metadata?._continue,
      };
    });
  }

  watchNodes(resourceVersion: string, handlers: WatchHandlers): Promise<() => void> {
    return this.watch('/api/v1/nodes', resourceVersion, handlers);
  }

  // --- Watches ---

  /**
   * A watch from `resourceVersion` with bookmarks. The server ends it after 5-10 minutes
   * (spread, so many agents do not reconnect at once); a silent connection is dropped
   * after 2 minutes without a byte (bookmarks arrive about every minute).
   */
  private async watch(path: string, resourceVersion: string, handlers: WatchHandlers): Promise<() => void> {
    const watch = new Watch(this.kc);
    // The library's inactivity timeout (30 s, declared private in its types) would drop an
    // idle but healthy watch between two bookmarks.
    (watch as unknown as { requestTimeoutMs: number }).requestTimeoutMs = 120_000;
    const timeoutSeconds = 300 + Math.floor(Math.random() * 300);
    let ended = false;
    const controller = await watch.watch(
      path,
      { resourceVersion, allowWatchBookmarks: true, timeoutSeconds },
      (type: string, object: Record<string, unknown>) => {
        if (!ended) handlers.onEvent(type as WatchEventType, object);
      },
      (err: unknown) => {
        if (ended) return;
        ended = true;
        this.observe('watch', err === null || err === undefined);
        if (err === null || err === undefined) handlers.onDone(undefined);
        else {
          // A refused watch (e.g. 403, 410 at connect) carries statusCode; a dropped one does not.
          const status = (err as { statusCode?: number }).statusCode;
          handlers.onDone(
            status === undefined
              ? toApiError(err, `watch ${path}`)
              : new ApiError(status, `watch ${path}: ${(err as Error).message}`),
          );
        }
      },
    );
    return () => {
      ended = true;
      controller.abort();
    };
  }

  // --- Events ---

  async createEvent(event: CoreV1Event): Promise<CoreV1Event> {
    const namespace = event.metadata.namespace ?? 'default';
    return this.call('create', 'create event', () =>
      this.core.createNamespacedEvent({ namespace, body: event }, this.options()),
    );
  }

  /** Counts a repeat of an earlier Event (merge patch of count and lastTimestamp), as client-go does. */
  async patchEventSeries(namespace: string, name: string, count: number, last: Date): Promise<void> {
    await this.call('patch', `patch event ${name}`, () =>
      this.core.patchNamespacedEvent(
        { namespace, name, body: { count, lastTimestamp: last.toISOString().replace(/\.\d+Z$/, 'Z') } },
        this.options(PatchStrategy.MergePatch),
      ),
    );
  }

  // --- Leases ---

  async getLease(namespace: string, name: string): Promise<V1Lease | undefined> {
    try {
      return await this.call(
        'get',
        `get lease ${namespace}/${name}`,
        () => this.coordination.readNamespacedLease({ namespace, name }, this.options()),
        [404],
      );
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) return undefined;
      throw error;
    }
  }

  async createLease(lease: V1Lease): Promise<V1Lease> {
    const namespace = lease.metadata!.namespace!;
    // 409: another candidate created it first, the normal end of a race.
    return this.call(
      'create',
      `create lease ${namespace}/${lease.metadata!.name}`,
      () => this.coordination.createNamespacedLease({ namespace, body: lease }, this.options()),
      [409],
    );
  }

  /** Replace with the lease's resourceVersion: 409 when someone else wrote it first (an answer, not a failure). */
  async replaceLease(lease: V1Lease): Promise<V1Lease> {
    const namespace = lease.metadata!.namespace!;
    const name = lease.metadata!.name!;
    return this.call(
      'update',
      `update lease ${namespace}/${name}`,
      () => this.coordination.replaceNamespacedLease({ namespace, name, body: lease }, this.options()),
      [409],
    );
  }
}

/** Lease and Event times are MicroTime: six fractional digits, which a plain Date does not print. */
export function microTime(date: Date): V1MicroTime {
  return new V1MicroTime(date.getTime());
}
