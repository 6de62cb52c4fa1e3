// A real, private Kubernetes API server for tests: etcd + kube-apiserver built from
// Go modules by scripts/cluster-tools.sh, started as children of the test process.
//
// What you get is the whole API (CRDs with CEL, status subresource, server-side apply,
// RBAC, TokenRequest, Events, Leases, Nodes) but no controllers: no kube-controller-
// manager runs, so nothing garbage-collects ownerReferences, finalizes namespaces or
// creates default ServiceAccounts. No kubelet runs either; create Node objects yourself.
// (The cluster lab with kubelet nodes adds them: control-plane.ts, kubelet-node.ts.)
import { spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import {
  closeSync,
  existsSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { request } from 'node:https';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inNetns, isAlive, onProcessExit, withPdeathsig } from './process-guard.ts';
import { createCertificateAuthority, issueCertificate } from './certificates.ts';
import { REPO } from './repo.ts';
import { eventually, GiveUp } from './support.ts';

const buildScript = join(REPO, 'scripts/cluster-tools.sh');

/** The kubernetes Service's cluster IP: the first address of --service-cluster-ip-range. */
export const KUBERNETES_SERVICE_IP = '10.0.0.1';

export interface KubectlResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface ApiServer {
  /** Path of an admin kubeconfig (system:masters, bearer token). */
  kubeconfig: string;
  /** https://ADDRESS:PORT */
  server: string;
  /** The CA that signed the serving cert; also the --client-ca-file, see caKey. */
  caFile: string;
  /** Its key, so a test can issue client certificates (e.g. for a node identity). */
  caKey: string;
  /** The admin's bearer token. */
  token: string;
  /**
   * Temp dir holding everything of this server (logs: etcd.log, kube-apiserver.log).
   * Removed by stop() unless IPIP_KEEP_APISERVER_DIR is set.
   */
  dir: string;
  /** Where kube-apiserver, etcd and helm are. */
  binDir: string;
  /** The network namespace both servers run in, when startApiServer was given one. */
  netns: string | undefined;
  /** Runs kubectl against this server as admin (inside netns if set). Never throws on a non-zero exit. */
  kubectl(args: string[], opts?: { input?: string; timeoutMs?: number }): Promise<KubectlResult>;
  /**
   * Stops kube-apiserver only (SIGTERM, SIGKILL after 5 s); etcd keeps running, so every
   * object survives. For tests of an agent whose API server is gone for a while.
   */
  pause(): Promise<void>;
  /** Starts kube-apiserver again with the same arguments and port; resolves when ready. */
  resume(): Promise<void>;
  /** pause() then resume(). */
  restart(): Promise<void>;
  /** etcd and kube-apiserver both stopped and started again, with etcd's data and the same ports. */
  restartAll(): Promise<void>;
  /** Kills etcd and kube-apiserver and removes dir. Safe to call twice. */
  stop(): Promise<void>;
}

export interface ApiServerOptions {
  /** --bind-address of kube-apiserver; default 127.0.0.1. etcd always stays on loopback. */
  bindAddress?: string;
  /**
   * An existing network namespace to run etcd, kube-apiserver and kubectl() in (with
   * `ip netns exec`). Its `lo` must be up (etcd listens on 127.0.0.1 there) and it must
   * hold bindAddress. The server is then only reachable from inside that namespace.
   */
  netns?: string;
}

let toolsDir: string | undefined;

/**
 * Builds the tools if needed (first time: minutes) and returns their directory (asked
 * once per process). Throws with an install hint when they cannot be built (e.g. no Go).
 */
export async function clusterTools(): Promise<string> {
  if (toolsDir !== undefined) return toolsDir;
  const { code, stdout, stderr } = await run('bash', [buildScript], {
    // Build progress is minutes long on a first run: let the person see it.
    onStderr: (chunk) => process.stderr.write(chunk),
  });
  const binDir = stdout.trim().split('\n').at(-1) ?? '';
  if (code !== 0 || !existsSync(join(binDir, 'kube-apiserver'))) {
    throw new Error(
      `cannot build kube-apiserver, etcd, kubectl etc. for the cluster tests (scripts/cluster-tools.sh exited ${code}):\n` +
        `${stderr.trim().split('\n').slice(-40).join('\n')}\n` +
        'The first build needs Go 1.26+ (the official release in /usr/local/go, or GO=/path/to/go) and the Go module proxy; ' +
        'run scripts/cluster-tools.sh by hand to see it whole. Binaries are cached in ' +
        // biome-ignore lint/suspicious/noTemplateCurlyInString: a shell parameter expansion, as the user would read it
        '${IPIP_TOOLS_CACHE:-~/.cache/ipip-operator/tools}.',
    );
  }
  toolsDir = binDir;
  return binDir;
}

export async function startApiServer(opts: ApiServerOptions = {}): Promise<ApiServer> {
  const binDir = await clusterTools();
  const bindAddress = opts.bindAddress ?? '127.0.0.1';
  // Ports are found free, then handed to the servers: another process can take one in
  // between. Rare, so just try again with new ports.
  let lastError: unknown;
  for (let attempt = 1; attempt <= 3; attempt++) {
    try {
      return await startOnce(binDir, bindAddress, opts.netns);
    } catch (err) {
      lastError = err;
      if (!(err instanceof PortClashError)) throw err;
    }
  }
  throw lastError;
}

class PortClashError extends Error {}

async function startOnce(binDir: string, bindAddress: string, netns: string | undefined): Promise<ApiServer> {
  // Under /var/tmp rather than /tmp: UML guests mount their own tmpfs over /tmp but see
  // the host's /var/tmp, so agents in guests can read this kubeconfig and CA.
  const base = existsSync('/var/tmp') ? '/var/tmp' : tmpdir();
  sweepStaleDirs(base);
  const dir = mkdtempSync(join(base, dirPrefix));
  // Whose dir this is, for sweepStaleDirs after a SIGKILL that left it behind.
  writeFileSync(join(dir, 'owner.pid'), String(process.pid));
  // pause()/resume() replace the apiserver child; the exit hook kills whatever is current.
  let etcd: ChildProcess | undefined;
  let apiserver: ChildProcess | undefined;
  let stopped = false;
  const alive = (c: ChildProcess | undefined): c is ChildProcess =>
    c !== undefined && c.exitCode === null && c.signalCode === null;

  const unregister = onProcessExit(() => {
    for (const c of [apiserver, etcd]) if (alive(c)) c.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  // SIGTERM first so etcd/apiserver shut down cleanly; SIGKILL whoever lingers.
  const terminate = async (c: ChildProcess | undefined) => {
    if (!alive(c)) return;
    const exited = new Promise((r) => c.once('exit', r));
    c.kill('SIGTERM');
    const t = setTimeout(() => c.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(t);
  };

  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await Promise.all([terminate(apiserver), terminate(etcd)]);
    unregister();
    // IPIP_KEEP_APISERVER_DIR=1 keeps the logs and etcd data to look at after a failure.
    // Without owner.pid the next run's sweep leaves it alone too.
    if (process.env.IPIP_KEEP_APISERVER_DIR) {
      rmSync(join(dir, 'owner.pid'), { force: true });
      process.stderr.write(`kept ${dir}\n`);
    } else {
      rmSync(dir, { recursive: true, force: true });
    }
  };

  try {
    const pki = makePki(dir, bindAddress);
    const kubeletClient = issueCertificate(
      dir,
      'kubelet-client',
      { cert: pki.caCert, key: pki.caKey },
      {
        commonName: 'kube-apiserver-kubelet-client',
        organizations: ['system:masters'],
        usage: ['client'],
      },
    );
    const token = randomBytes(24).toString('hex');
    const tokenFile = join(dir, 'tokens.csv');
    // token,user,uid,"group1,group2"
    writeFileSync(tokenFile, `${token},admin,admin-uid,"system:masters"\n`, { mode: 0o600 });

    // ServiceAccount token signing, so tests can mint tokens (kubectl create token)
    // for the chart's ServiceAccount and run the agent under its RBAC.
    const sa = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const saKey = join(dir, 'sa.key');
    const saPub = join(dir, 'sa.pub');
    writeFileSync(saKey, sa.privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
    writeFileSync(saPub, sa.publicKey.export({ type: 'spki', format: 'pem' }));

    const [etcdClient, etcdPeer] = await freePorts('127.0.0.1', 2, netns);
    const [apiPort] = await freePorts(bindAddress, 1, netns);

    const etcdUrl = `http://127.0.0.1:${etcdClient}`;
    const etcdLog = join(dir, 'etcd.log');
    const etcdArgs = [
      '--name=test',
      `--data-dir=${join(dir, 'etcd')}`,
      `--listen-client-urls=${etcdUrl}`,
      `--advertise-client-urls=${etcdUrl}`,
      `--listen-peer-urls=http://127.0.0.1:${etcdPeer}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${etcdPeer}`,
      `--initial-cluster=test=http://127.0.0.1:${etcdPeer}`,
      // Throwaway data: fsync only slows tests down.
      '--unsafe-no-fsync',
      '--log-level=warn',
    ];
    const startEtcd = () => {
      etcd = startChild(join(binDir, 'etcd'), etcdArgs, etcdLog, netns);
    };
    startEtcd();

    const hostForUrl = bindAddress === '0.0.0.0' || bindAddress === '::' ? '127.0.0.1' : bindAddress;
    const server = `https://${hostForUrl.includes(':') ? `[${hostForUrl}]` : hostForUrl}:${apiPort}`;
    const apiserverArgs = [
      `--etcd-servers=${etcdUrl}`,
      `--bind-address=${bindAddress}`,
      `--secure-port=${apiPort}`,
      // Without it, a loopback or 0.0.0.0 bind makes the apiserver look for a default
      // route to pick an address, and a network namespace may have none.
      `--advertise-address=${hostForUrl}`,
      // No controller-manager keeps the "kubernetes" Service endpoints anyway, and a
      // loopback advertise address is not a valid endpoint.
      '--endpoint-reconciler-type=none',
      `--tls-cert-file=${pki.serverCert}`,
      `--tls-private-key-file=${pki.serverKey}`,
      `--client-ca-file=${pki.caCert}`,
      `--token-auth-file=${tokenFile}`,
      // As a real cluster: kubelets (kubelet-node.ts) may read and write only what concerns
      // their own Node and its pods.
      '--authorization-mode=Node,RBAC',
      '--enable-admission-plugins=NodeRestriction',
      // How it calls kubelets (logs, exec): at their InternalIP, checking their serving
      // certificate against the lab's CA, with a client certificate they accept.
      `--kubelet-client-certificate=${kubeletClient.cert}`,
      `--kubelet-client-key=${kubeletClient.key}`,
      `--kubelet-certificate-authority=${pki.caCert}`,
      '--kubelet-preferred-address-types=InternalIP',
      `--service-account-issuer=https://kubernetes.default.svc.cluster.local`,
      `--service-account-key-file=${saPub}`,
      `--service-account-signing-key-file=${saKey}`,
      // Its first address is the kubernetes Service's, KUBERNETES_SERVICE_IP.
      '--service-cluster-ip-range=10.0.0.0/24',
      '--profiling=false',
    ];
    const apiserverLog = join(dir, 'kube-apiserver.log');
    const startApiserver = () => {
      apiserver = startChild(join(binDir, 'kube-apiserver'), apiserverArgs, apiserverLog, netns);
      return apiserver;
    };
    startApiserver();

    const kubeconfig = join(dir, 'kubeconfig');
    const ca = readFileSync(pki.caCert);
    writeFileSync(kubeconfig, kubeconfigYaml(server, ca, token), { mode: 0o600 });

    // The kubectl built with the server (scripts/cluster-tools.sh), not the machine's:
    // Debian's is 1.20, too old for this server (no patch --subresource, a skew warning).
    const kubectl = (args: string[], o: { input?: string; timeoutMs?: number } = {}) =>
      run(...inNetns(netns, join(binDir, 'kubectl'), args), {
        input: o.input,
        timeoutMs: o.timeoutMs ?? 60_000,
        // Own discovery cache per server: ports are reused across runs, and the
        // user's ~/.kube stays untouched.
        env: { ...process.env, KUBECONFIG: kubeconfig, KUBECACHEDIR: join(dir, 'kube-cache') },
      });

    // Outside a namespace, an https GET from here; inside one, this process cannot
    // connect, so kubectl asks from within (it exits 0 only on a 200).
    const readyz = async (): Promise<{ ok: boolean; detail: string }> => {
      if (netns === undefined) {
        const r = await get(`${server}/readyz`, ca, token).catch((e: Error) => ({ status: 0, body: e.message }));
        return { ok: r.status === 200, detail: `${r.status} ${r.body}` };
      }
      const r = await kubectl(['get', '--raw', '/readyz', '--request-timeout=5s'], { timeoutMs: 10_000 });
      return { ok: r.code === 0, detail: `${r.stdout}${r.stderr}`.trim() };
    };
    const watched = (): Watched[] => [
      { name: 'etcd', child: etcd!, log: etcdLog },
      { name: 'kube-apiserver', child: apiserver!, log: apiserverLog },
    ];

    await waitReady(server, readyz, watched());

    const pause = async () => {
      if (stopped) throw new Error('pause(): the API server was stopped');
      await terminate(apiserver);
    };
    const resume = async () => {
      if (stopped) throw new Error('resume(): the API server was stopped');
      if (alive(apiserver)) return;
      startApiserver();
      // The same port as before: a clash here is a real failure, not one to retry.
      await waitReady(server, readyz, watched()).catch((err: unknown) => {
        throw err instanceof PortClashError ? new Error(err.message) : err;
      });
    };
    const restart = async () => {
      await pause();
      await resume();
    };
    // The whole control plane down and up: the API server first (it needs etcd), then etcd,
    // which comes back with its data; the same ports, so clients need no new config.
    const restartAll = async () => {
      if (stopped) throw new Error('restartAll(): the API server was stopped');
      await terminate(apiserver);
      await terminate(etcd);
      startEtcd();
      startApiserver();
      await waitReady(server, readyz, watched()).catch((err: unknown) => {
        throw err instanceof PortClashError ? new Error(err.message) : err;
      });
    };

    return {
      kubeconfig,
      server,
      caFile: pki.caCert,
      caKey: pki.caKey,
      token,
      dir,
      binDir,
      netns,
      kubectl,
      pause,
      resume,
      restart,
      restartAll,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

const dirPrefix = 'ipip-apiserver-';

/** Removes the dirs of earlier test processes that died without cleaning up (SIGKILL). */
function sweepStaleDirs(base: string): void {
  for (const name of readdirSync(base)) {
    if (!name.startsWith(dirPrefix)) continue;
    let pid: number;
    try {
      pid = Number(readFileSync(join(base, name, 'owner.pid'), 'utf8'));
    } catch {
      continue; // being created right now, or not ours
    }
    if (!pid || isAlive(pid)) continue;
    rmSync(join(base, name), { recursive: true, force: true });
  }
}

/** Spawns a server as a child whose output goes to a log file (also kube-controller-manager, kube-scheduler). */
export function startChild(bin: string, args: string[], logFile: string, netns: string | undefined): ChildProcess {
  const fd = openSync(logFile, 'a');
  // Parent-death signal: the kernel kills the child when this process dies, even by
  // SIGKILL, which no 'exit' handler sees (see process-guard.ts).
  const [cmd, argv] = withPdeathsig(...inNetns(netns, bin, args));
  const child = spawn(cmd, argv, { stdio: ['ignore', fd, fd] });
  closeSync(fd);
  // An 'error' (e.g. ENOENT) must not become an uncaught exception; waitReady sees the exit.
  child.on('error', (err) => writeFileSync(logFile, `spawn failed: ${err.message}\n`, { flag: 'a' }));
  return child;
}

interface Watched {
  name: string;
  child: ChildProcess;
  log: string;
}

async function waitReady(
  server: string,
  readyz: () => Promise<{ ok: boolean; detail: string }>,
  watched: Watched[],
): Promise<void> {
  await eventually(
    `kube-apiserver at ${server} ready (/readyz)`,
    async () => {
      for (const w of watched) {
        if (w.child.exitCode !== null || w.child.signalCode !== null) {
          const log = tail(w.log);
          const msg = `${w.name} exited (${w.child.exitCode ?? w.child.signalCode}) during startup:\n${log}`;
          throw new GiveUp(/address already in use/.test(log) ? new PortClashError(msg) : new Error(msg));
        }
      }
      const r = await readyz();
      if (!r.ok) throw new Error(r.detail);
      return true;
    },
    {
      timeoutMs: 90_000,
      intervalMs: 250,
      context: async () => watched.map((w) => `--- ${w.name}:\n${tail(w.log)}`).join('\n'),
    },
  );
}

function get(url: string, ca: Buffer, token: string): Promise<{ status: number; body: string }> {
  return new Promise((res, rej) => {
    const req = request(url, { ca, headers: { authorization: `Bearer ${token}` }, timeout: 5000 }, (resp) => {
      let body = '';
      resp.setEncoding('utf8');
      resp.on('data', (c: string) => (body += c));
      resp.on('end', () => res({ status: resp.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', rej);
    req.end();
  });
}

interface Pki {
  caCert: string;
  caKey: string;
  serverCert: string;
  serverKey: string;
}

/**
 * A throwaway CA and a serving cert for the apiserver, valid for 127.0.0.1, localhost,
 * the bind address and the kubernetes Service's IP (which pods reach it by,
 * kubelet-node.ts). Own CA rather than --cert-dir's self-signed pair, whose names depend
 * on the bind/advertise address, and so the same CA can sign client certs.
 */
function makePki(dir: string, bindAddress: string): Pki {
  const ips = new Set(['127.0.0.1', bindAddress, KUBERNETES_SERVICE_IP]);
  ips.delete('0.0.0.0');
  ips.delete('::');
  const ca = createCertificateAuthority(dir, 'ca', 'ipip-operator-test-ca');
  const server = issueCertificate(dir, 'server', ca, {
    commonName: 'kube-apiserver',
    usage: ['server'],
    ips: [...ips],
    dnsNames: [
      'localhost',
      'kubernetes',
      'kubernetes.default',
      'kubernetes.default.svc',
      'kubernetes.default.svc.cluster.local',
    ],
  });
  return { caCert: ca.cert, caKey: ca.key, serverCert: server.cert, serverKey: server.key };
}

/** A kubeconfig (as text) that authenticates to server with a bearer token. */
export function kubeconfigYaml(server: string, ca: Buffer, token: string, user = 'admin'): string {
  // JSON is YAML; no YAML library needed.
  return JSON.stringify(
    {
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'test', cluster: { server, 'certificate-authority-data': ca.toString('base64') } }],
      users: [{ name: user, user: { token } }],
      contexts: [{ name: 'test', context: { cluster: 'test', user } }],
      'current-context': 'test',
    },
    null,
    2,
  );
}

/** Free TCP ports on an address, found by letting the kernel pick (inside netns if given). */
async function freePorts(address: string, n: number, netns?: string): Promise<number[]> {
  if (netns !== undefined) {
    // This process's sockets live in its own namespace: ask a child inside the target one.
    const r = await run(...inNetns(netns, process.execPath, ['-e', freePortsScript, address, String(n)]), {
      timeoutMs: 30_000,
    });
    if (r.code !== 0) throw new Error(`cannot find free ports on ${address} in netns ${netns}: ${r.stderr}`);
    return JSON.parse(r.stdout) as number[];
  }
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<ReturnType<typeof createServer>>((res, rej) => {
          const s = createServer();
          s.once('error', rej);
          s.listen(0, address, () => res(s));
        }),
    ),
  );
  // Hold all n open at once so they are distinct, then release.
  const ports = servers.map((s) => (s.address() as { port: number }).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

// The same as above as a script of its own (argv: address, n), printing the ports as JSON.
const freePortsScript = `
const net = require('node:net');
const [address, n] = process.argv.slice(1);
const servers = Array.from({length: Number(n)}, () => net.createServer());
Promise.all(servers.map((s) => new Promise((res, rej) => { s.once('error', rej); s.listen(0, address, res); })))
  .then(() => { console.log(JSON.stringify(servers.map((s) => s.address().port))); servers.forEach((s) => s.close()); });
`;

function tail(file: string, lines = 30): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

interface RunOptions {
  input?: string | undefined;
  timeoutMs?: number | undefined;
  env?: NodeJS.ProcessEnv;
  onStderr?: (chunk: string) => void;
}

/** kubectl against the server as admin; its stdout, or an error with its stderr. */
export async function kubectlOk(api: ApiServer, args: string[], input?: string, timeoutMs?: number): Promise<string> {
  const r = await api.kubectl(args, {
    ...(input === undefined ? {} : { input }),
    ...(timeoutMs === undefined ? {} : { timeoutMs }),
  });
  if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')} exited ${r.code}: ${r.stderr.trim()}`);
  return r.stdout;
}

/**
 * Runs helm (built with the other tools) with its own dirs (HELM_*_HOME) under `home`,
 * against `api` (inside its network namespace, if it has one) or, without one, a
 * kubeconfig that points nowhere, so nothing on this machine is used.
 */
export async function runHelm(
  args: string[],
  opts: { home: string; api?: ApiServer | undefined },
): Promise<KubectlResult> {
  const { api, home } = opts;
  const helm = join(api?.binDir ?? (await clusterTools()), 'helm');
  return run(...inNetns(api?.netns, helm, args), {
    timeoutMs: 120_000,
    env: {
      ...process.env,
      HELM_CACHE_HOME: join(home, 'cache'),
      HELM_CONFIG_HOME: join(home, 'config'),
      HELM_DATA_HOME: join(home, 'data'),
      KUBECONFIG: api?.kubeconfig ?? join(home, 'no-kubeconfig'),
      ...(api === undefined ? {} : { KUBECACHEDIR: join(api.dir, 'kube-cache') }),
    },
  });
}

/** Runs a command to completion; resolves with its exit code and output, never rejects on exit status. */
export function run(cmd: string, args: string[], o: RunOptions = {}): Promise<KubectlResult> {
  return new Promise((res, rej) => {
    const child = spawn(cmd, args, { env: o.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => {
      stderr += c;
      o.onStderr?.(c);
    });
    const timer = o.timeoutMs ? setTimeout(() => child.kill('SIGKILL'), o.timeoutMs) : undefined;
    child.on('error', (err) => {
      clearTimeout(timer);
      rej(new Error(`cannot run ${cmd}: ${err.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      res({ code: code ?? (signal ? 128 : 1), stdout, stderr: signal ? `${stderr}\n(killed by ${signal})` : stderr });
    });
    child.stdin.on('error', () => {}); // the command may exit before reading its input
    child.stdin.end(o.input ?? '');
  });
}
