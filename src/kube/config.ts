// Where the API server is and how the agent proves who it is: a kubeconfig (--kubeconfig,
// $KUBECONFIG, ~/.kube/config) or the pod's ServiceAccount. The agent is a node agent: in
// production it runs in a pod, and out of one (the lab, a test) a kubeconfig gives it a
// token, a token file or a client certificate. Everything else a kubeconfig can say (exec
// plugins, auth providers, proxies, basic auth) is refused with the field it names, never
// ignored: a credential the agent silently skipped would look like an RBAC problem.
//
// Reading files is all this does (no request is made here); src/kube/client.ts talks to the
// server with what it returns.

import { readFileSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, isAbsolute, join } from 'node:path';
import { loadAll } from 'js-yaml';

export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

/** How to reach one API server, with the TLS material read and the token readable. */
export interface ClusterAccess {
  /** The server's URL, e.g. https://10.96.0.1:443 (a path prefix is kept). */
  server: string;
  /** PEM of the CA(s) to trust; undefined: the system's roots. */
  ca?: Buffer;
  /** Do not verify the server's certificate (the kubeconfig's insecure-skip-tls-verify). */
  insecure: boolean;
  /** The name to verify the server's certificate against, when not the URL's host. */
  tlsServerName?: string;
  clientCert?: Buffer;
  clientKey?: Buffer;
  /** The bearer token for the next request, if any: a token file is read again as it changes. */
  token(): string | undefined;
  /** Where this came from, for messages: a kubeconfig path or "in-cluster". */
  source: string;
}

/** A kubeconfig that cannot be used: the message says which file and which field. */
export class KubeConfigError extends Error {}

type Fields = Record<string, unknown>;

interface Named {
  name: string;
  /** The file that defined it: relative paths in it are relative to that file's directory. */
  file: string;
  fields: Fields;
}

/** One kubeconfig file: where it is (relative paths in it start there) and its text. */
export interface KubeConfigFile {
  path: string;
  text: string;
}

/** The fields a user entry may carry; any other is refused (exec, auth-provider, username, ...). */
const USER_FIELDS = new Set([
  'token',
  'tokenFile',
  'client-certificate',
  'client-certificate-data',
  'client-key',
  'client-key-data',
]);
/** The fields a cluster entry may carry; extensions and the like are only notes for tools. */
const CLUSTER_FIELDS = new Set([
  'server',
  'certificate-authority',
  'certificate-authority-data',
  'insecure-skip-tls-verify',
  'tls-server-name',
  'extensions',
  'disable-compression',
]);

function entries(file: KubeConfigFile, doc: Fields, key: string, inner: string): Named[] {
  const list = doc[key];
  if (list === undefined || list === null) return [];
  if (!Array.isArray(list)) throw new KubeConfigError(`${file.path}: "${key}" is not a list`);
  return list.map((item: unknown, i) => {
    const entry = item as Fields | null;
    if (typeof entry?.name !== 'string' || entry.name === '')
      throw new KubeConfigError(`${file.path}: ${key}[${i}] has no name`);
    const fields = entry[inner] ?? {};
    if (typeof fields !== 'object' || fields === null || Array.isArray(fields))
      throw new KubeConfigError(`${file.path}: ${key}[${i}] (${entry.name}) has no "${inner}" map`);
    return { name: entry.name, file: file.path, fields: fields as Fields };
  });
}

/**
 * The context a set of kubeconfig files selects, merged as kubectl merges $KUBECONFIG: the
 * first file to name a cluster, user or context wins, and the first current-context set is
 * the one. Pure: the files' text is given, and files it names are read by `readFile`.
 */
export function accessFromKubeConfigs(
  files: readonly KubeConfigFile[],
  readFile: (path: string) => Buffer,
): ClusterAccess {
  const clusters = new Map<string, Named>();
  const users = new Map<string, Named>();
  const contexts = new Map<string, Named>();
  let current: string | undefined;
  for (const file of files) {
    let docs: unknown[];
    try {
      docs = loadAll(file.text, { maxAliases: 100 });
    } catch (error) {
      throw new KubeConfigError(`${file.path}: not YAML: ${(error as Error).message.split('\n')[0]}`);
    }
    if (docs.length > 1) throw new KubeConfigError(`${file.path}: ${docs.length} YAML documents, a kubeconfig is one`);
    const doc = docs[0];
    if (doc === null || doc === undefined) continue;
    if (typeof doc !== 'object' || Array.isArray(doc)) throw new KubeConfigError(`${file.path}: not a kubeconfig`);
    const fields = doc as Fields;
    for (const [map, key, inner] of [
      [clusters, 'clusters', 'cluster'],
      [users, 'users', 'user'],
      [contexts, 'contexts', 'context'],
    ] as const)
      for (const entry of entries(file, fields, key, inner)) if (!map.has(entry.name)) map.set(entry.name, entry);
    const cc = fields['current-context'];
    if (current === undefined && typeof cc === 'string' && cc !== '') current = cc;
  }
  const where = files.map((f) => f.path).join(':');
  if (current === undefined) throw new KubeConfigError(`${where}: no current-context`);
  const context = contexts.get(current);
  if (context === undefined)
    throw new KubeConfigError(`${where}: current-context "${current}" is not among its contexts`);
  const clusterName = context.fields.cluster;
  const cluster = typeof clusterName === 'string' ? clusters.get(clusterName) : undefined;
  if (cluster === undefined)
    throw new KubeConfigError(
      `${context.file}: context "${current}" names no cluster that is defined (${String(clusterName)})`,
    );
  const userName = context.fields.user;
  const user = typeof userName === 'string' && userName !== '' ? users.get(userName) : undefined;
  if (typeof userName === 'string' && userName !== '' && user === undefined)
    throw new KubeConfigError(`${context.file}: context "${current}" names user "${userName}", which is not defined`);

  for (const key of Object.keys(cluster.fields))
    if (!CLUSTER_FIELDS.has(key))
      throw new KubeConfigError(
        `${cluster.file}: cluster "${cluster.name}" sets "${key}", which the agent does not support`,
      );
  for (const key of Object.keys(user?.fields ?? {}))
    if (!USER_FIELDS.has(key))
      throw new KubeConfigError(
        `${user!.file}: user "${user!.name}" sets "${key}", which the agent does not support: ` +
          'give it a token, a tokenFile or a client certificate (in a pod it uses its ServiceAccount)',
      );

  const server = cluster.fields.server;
  if (typeof server !== 'string' || !/^https?:\/\/[^/]/.test(server))
    throw new KubeConfigError(`${cluster.file}: cluster "${cluster.name}" has no http(s) server URL`);
  const material = (entry: Named, dataKey: string, fileKey: string): Buffer | undefined => {
    const data = entry.fields[dataKey];
    if (typeof data === 'string' && data !== '') return Buffer.from(data, 'base64');
    const path = entry.fields[fileKey];
    if (typeof path !== 'string' || path === '') return undefined;
    const full = isAbsolute(path) ? path : join(dirname(entry.file), path);
    try {
      return readFile(full);
    } catch (error) {
      throw new KubeConfigError(`${entry.file}: ${fileKey} ${full}: ${(error as Error).message}`);
    }
  };
  const clientCert = user === undefined ? undefined : material(user, 'client-certificate-data', 'client-certificate');
  const clientKey = user === undefined ? undefined : material(user, 'client-key-data', 'client-key');
  if ((clientCert === undefined) !== (clientKey === undefined))
    throw new KubeConfigError(`${user!.file}: user "${user!.name}" has a client certificate or key without the other`);
  const ca = material(cluster, 'certificate-authority-data', 'certificate-authority');
  const tlsServerName = cluster.fields['tls-server-name'];
  const token = user?.fields.token;
  const tokenFile = user?.fields.tokenFile;
  return {
    server,
    ...(ca === undefined ? {} : { ca }),
    insecure: cluster.fields['insecure-skip-tls-verify'] === true,
    ...(typeof tlsServerName === 'string' && tlsServerName !== '' ? { tlsServerName } : {}),
    ...(clientCert === undefined ? {} : { clientCert, clientKey: clientKey! }),
    token:
      typeof token === 'string' && token !== ''
        ? () => token
        : typeof tokenFile === 'string' && tokenFile !== ''
          ? rereadToken(isAbsolute(tokenFile) ? tokenFile : join(dirname(user!.file), tokenFile))
          : () => undefined,
    source: where,
  };
}

/**
 * A token file read again when it changes (the kubelet rotates a projected ServiceAccount
 * token about hourly, before it expires), looked at no more than once a minute as client-go
 * does. A read that fails keeps the last token: the server's 401 then says what happened.
 */
export function rereadToken(path: string, now: () => number = Date.now): () => string {
  let token = readFileSync(path, 'utf8').trim();
  let checkedAt = now();
  let mtimeMs = statSync(path).mtimeMs;
  return () => {
    if (now() - checkedAt < 60_000) return token;
    checkedAt = now();
    try {
      const m = statSync(path).mtimeMs;
      if (m !== mtimeMs) {
        token = readFileSync(path, 'utf8').trim();
        mtimeMs = m;
      }
    } catch {
      /* keep the last token */
    }
    return token;
  };
}

/** The pod's ServiceAccount: the API server's Service from the environment, its CA and token. */
export function inClusterAccess(env: NodeJS.ProcessEnv, dir = SERVICE_ACCOUNT_DIR): ClusterAccess {
  const host = env.KUBERNETES_SERVICE_HOST ?? '';
  const port = env.KUBERNETES_SERVICE_PORT ?? '443';
  if (host === '') throw new KubeConfigError('not in a pod: KUBERNETES_SERVICE_HOST is not set');
  let ca: Buffer;
  let token: () => string;
  try {
    ca = readFileSync(join(dir, 'ca.crt'));
    token = rereadToken(join(dir, 'token'));
  } catch (error) {
    throw new KubeConfigError(`in-cluster: the ServiceAccount is not mounted: ${(error as Error).message}`);
  }
  return {
    server: `https://${host.includes(':') ? `[${host}]` : host}:${port}`,
    ca,
    insecure: false,
    token,
    source: 'in-cluster',
  };
}

function readKubeConfigs(paths: readonly string[]): ClusterAccess {
  const files: KubeConfigFile[] = [];
  for (const path of paths) {
    try {
      files.push({ path, text: readFileSync(path, 'utf8') });
    } catch (error) {
      // $KUBECONFIG may list files that do not exist (kubectl skips them); one given alone must.
      if (paths.length === 1) throw new KubeConfigError(`${path}: ${(error as Error).message}`);
    }
  }
  if (files.length === 0) throw new KubeConfigError(`none of ${paths.join(':')} can be read`);
  return accessFromKubeConfigs(files, (p) => readFileSync(p));
}

/**
 * The access the agent uses: --kubeconfig; else $KUBECONFIG (a list, merged); else the pod's
 * ServiceAccount when in a pod; else ~/.kube/config.
 */
export function loadClusterAccess(kubeconfig: string | undefined, env: NodeJS.ProcessEnv = process.env): ClusterAccess {
  if (kubeconfig !== undefined) return readKubeConfigs([kubeconfig]);
  const list = (env.KUBECONFIG ?? '').split(':').filter((p) => p !== '');
  if (list.length > 0) return readKubeConfigs(list);
  if (env.KUBERNETES_SERVICE_HOST) return inClusterAccess(env);
  const home = join(homedir(), '.kube', 'config');
  try {
    statSync(home);
  } catch {
    throw new KubeConfigError('no Kubernetes cluster configured: pass --kubeconfig, set KUBECONFIG, or run in a pod');
  }
  return readKubeConfigs([home]);
}
