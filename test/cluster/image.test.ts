// The agent's container image, really built: scripts/image.sh builds the Dockerfile as it
// is with Debian's buildah (vfs storage, chroot isolation, no container engine) on FROM
// images it makes with debootstrap, and writes it as an OCI archive. This test loads that
// archive into a buildah storage of its own and checks what a user of the image sees: its
// name, its unpacked size (budget: 300 MB), `version` and `plan` run through the
// entrypoint (as root, as the chart runs it, and as a non-root uid), `ip` and `nft`, the
// entrypoint and command the chart relies on, the pinned Node without npm or corepack,
// no node_modules (the bundle carries them) with every chunk loading, nothing under /app written, the
// labels, and no certificate or npm setting of the machine it was built on.
//
// Needs buildah and debootstrap (scripts/setup.sh installs them) and root; without them this
// test FAILS (never skips) with how to install them. The first build on a machine takes
// about 2 minutes (the bases, then the build); scripts/test.sh runs scripts/image.sh before
// the tests, so here it is normally found in the cache at once.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import {
  existsSync,
  lstatSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { rootCertificates } from 'node:tls';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { run } from '../harness/apiserver.ts';
import type { KubectlResult } from '../harness/apiserver.ts';
import { onProcessExit, isAlive } from '../harness/process-guard.ts';
import { EXAMPLE, REPO } from '../harness/repo.ts';
import { requireCommands } from '../harness/uml.ts';

/** The largest unpacked image accepted (bytes of its files, as `du -sb` counts them): 300 MB. */
const BUDGET_BYTES = 300_000_000;
const HINT = 'apt-get install -y buildah debootstrap (or run scripts/setup.sh, which installs them); run as root';
const TMP = '/var/tmp';
const PREFIX = 'ipip-image-test-';

interface PackageJson {
  version: string;
  license: string;
  bin: Record<string, string>;
}
const PKG = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as PackageJson;
const LOCK = JSON.parse(readFileSync(join(REPO, 'package-lock.json'), 'utf8')) as {
  packages: Record<string, { version?: string; dev?: boolean }>;
};
const chart = join(REPO, 'deploy/helm/ipip-operator');
const DAEMONSET = readFileSync(join(chart, 'templates/daemonset.yaml'), 'utf8');

/** The chart's default image: image.repository, and image.tag or else the chart's appVersion. */
function chartImage(): string {
  const values = parseYaml(readFileSync(join(chart, 'values.yaml'), 'utf8')) as {
    image: { repository: string; tag: string };
  };
  const meta = parseYaml(readFileSync(join(chart, 'Chart.yaml'), 'utf8')) as { appVersion: string };
  return `${values.image.repository}:${values.image.tag || meta.appVersion}`;
}

/** What examples/tunnel.yaml asks of node-a, against a kernel without the agent's objects. */
const EXAMPLE_PLAN = [
  'ip link add name ipiptun mtu 1480 group 203 type ipip local 192.168.40.2 remote 192.168.40.3 ttl 64 dev eth1',
  'ip link set dev ipiptun alias ipip-operator/lab',
  'ip link set dev ipiptun up',
  'ip address add 172.0.0.2/32 peer 172.0.0.3/32 dev ipiptun',
  'ip route replace 172.0.0.0/24 dev ipiptun proto 203',
];

interface ImageConfig {
  User?: string;
  Env?: string[];
  Entrypoint?: string[];
  Cmd?: string[];
  WorkingDir?: string;
  Labels?: Record<string, string>;
}

/** Directories of runs that were killed before their cleanup (their pid is gone). */
function sweepStale(): void {
  for (const name of readdirSync(TMP)) {
    const pid = Number(/^ipip-image-test-(\d+)-/.exec(name)?.[1]);
    if (pid > 0 && pid !== process.pid && !isAlive(pid)) rmSync(join(TMP, name), { recursive: true, force: true });
  }
}

/** The files of a tree as "path size mode mtime" lines, sorted. */
function snapshot(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const entry of readdirSync(d, { withFileTypes: true })) {
      const path = join(d, entry.name);
      const s = lstatSync(path);
      out.push(`${path} ${s.size} ${s.mode.toString(8)} ${s.mtimeMs}`);
      if (entry.isDirectory()) walk(path);
    }
  };
  walk(dir);
  return out.sort();
}

/** The CA bundles this machine's tools use (npm's cafile, NODE_EXTRA_CA_CERTS, SSL_CERT_FILE, Debian's). */
function machineBundles(): string[] {
  const npm = spawnSync('npm', ['config', 'get', 'cafile'], { encoding: 'utf8' }).stdout?.trim();
  const candidates = [
    npm,
    process.env.NODE_EXTRA_CA_CERTS,
    process.env.SSL_CERT_FILE,
    '/etc/ssl/certs/ca-certificates.crt',
  ];
  const files = candidates.filter((f): f is string => f !== undefined && f !== '' && f !== 'null' && existsSync(f));
  return [...new Set(files.map((f) => realpathSync(f)))];
}

describe('the container image (scripts/image.sh, from the Dockerfile)', () => {
  let dir = '';
  let archive = '';
  let rootfs = '';
  let container = '';
  let config: ImageConfig = {};
  let appBefore: string[] = [];
  let unregister = () => {};
  const buildah = (...args: string[]) => [
    '--root',
    join(dir, 'storage'),
    '--runroot',
    join(dir, 'run'),
    '--storage-driver',
    'vfs',
    ...args,
  ];
  const ok = async (args: string[]): Promise<string> => {
    const r = await run('buildah', buildah(...args), { timeoutMs: 300_000 });
    assert.equal(r.code, 0, `buildah ${args.join(' ')}: ${r.stderr}`);
    return r.stdout.trim();
  };
  /** A command in a container of the image (chroot isolation), as `user` (default: the image's). */
  const inImage = (command: string[], o: { user?: string; volumes?: string[] } = {}): Promise<KubectlResult> =>
    run(
      'buildah',
      buildah(
        'run',
        '--isolation',
        'chroot',
        ...(o.user === undefined ? [] : ['--user', o.user]),
        ...(o.volumes ?? []).flatMap((v) => ['--volume', v]),
        container,
        '--',
        ...command,
      ),
      { timeoutMs: 120_000 },
    );
  /** The image's entrypoint with these arguments, as the container runtime starts it. */
  const entrypoint = (args: string[], o: { user?: string; volumes?: string[] } = {}) =>
    inImage([...(config.Entrypoint ?? []), ...args], o);
  const inRoot = (path: string) => join(rootfs, path);

  before(async () => {
    requireCommands(['buildah', 'debootstrap'], HINT);
    assert.equal(process.getuid?.(), 0, `buildah's chroot isolation needs root: ${HINT}`);
    const started = Date.now();
    const built = await run('bash', [join(REPO, 'scripts/image.sh')], { timeoutMs: 1_800_000 });
    archive = built.stdout.trim().split('\n').at(-1) ?? '';
    assert.ok(
      built.code === 0 && existsSync(archive),
      `scripts/image.sh exited ${built.code} without an archive:\n${built.stderr.split('\n').slice(-30).join('\n')}`,
    );
    process.stderr.write(`# scripts/image.sh: ${archive} in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
    sweepStale();
    dir = mkdtempSync(join(TMP, `${PREFIX}${process.pid}-`));
    unregister = onProcessExit(() => rmSync(dir, { recursive: true, force: true }));
    const id = await ok(['pull', '--quiet', `oci-archive:${archive}`]);
    const inspect = JSON.parse(await ok(['inspect', '--type', 'image', id])) as { OCIv1: { config: ImageConfig } };
    config = inspect.OCIv1.config;
    container = await ok(['from', '--pull=never', id]);
    rootfs = await ok(['mount', container]);
    appBefore = snapshot(inRoot('app'));
  });

  after(async () => {
    if (dir === '') return;
    await run('buildah', buildah('rm', '--all'), { timeoutMs: 120_000 });
    rmSync(dir, { recursive: true, force: true });
    unregister();
  });

  test("the archive carries the chart's default image name, the one ctr images import keeps", async () => {
    assert.equal(chartImage(), `ghcr.io/ipip-operator/ipip-operator:${PKG.version}`);
    const index = await run('tar', ['-xOf', archive, 'index.json']);
    assert.equal(index.code, 0, index.stderr);
    const manifests = (JSON.parse(index.stdout) as { manifests: { annotations?: Record<string, string> }[] }).manifests;
    assert.deepEqual(
      manifests.map((m) => m.annotations?.['org.opencontainers.image.ref.name']),
      [chartImage()],
    );
  });

  test(`unpacked it is under the budget of ${BUDGET_BYTES / 1e6} MB`, async (t) => {
    const du = await run('du', ['-sb', rootfs]);
    assert.equal(du.code, 0, du.stderr);
    const bytes = Number(du.stdout.split('\t')[0]);
    t.diagnostic(
      `unpacked: ${(bytes / 1e6).toFixed(1)} MB (${bytes} bytes); archive: ${(statSync(archive).size / 1e6).toFixed(1)} MB`,
    );
    assert.ok(bytes > 50_000_000, `${bytes} bytes: the du of the image's files`);
    assert.ok(
      bytes < BUDGET_BYTES,
      `${(bytes / 1e6).toFixed(1)} MB unpacked, over the budget of ${BUDGET_BYTES / 1e6} MB`,
    );
  });

  test("version prints package.json's version, as root (as the chart runs it) and as a non-root uid", async () => {
    for (const user of [undefined, '65534:65534', '1000:1000']) {
      const r = await entrypoint(['version'], user === undefined ? {} : { user });
      assert.equal(r.code, 0, `${user ?? 'default user'}: ${r.stdout}${r.stderr}`);
      assert.equal(r.stdout.trim(), PKG.version, user ?? 'default user');
    }
  });

  test('plan of examples/tunnel.yaml from scratch prints the ip commands, without a kernel', async () => {
    const examples = join(REPO, 'examples');
    const file = `/run/examples/${EXAMPLE.slice(examples.length + 1)}`;
    for (const user of [undefined, '65534:65534']) {
      const r = await entrypoint(['plan', '-f', file, '--node', 'node-a', '--from-scratch'], {
        volumes: [`${examples}:/run/examples:ro`],
        ...(user === undefined ? {} : { user }),
      });
      assert.equal(r.code, 0, `${user ?? 'default user'}: ${r.stdout}${r.stderr}`);
      assert.deepEqual(r.stdout.trimEnd().split('\n'), EXAMPLE_PLAN);
    }
  });

  test('the image has ip (iproute2) and nft (nftables), the two programs the agent runs', async () => {
    const ip = await inImage(['ip', '-V']);
    assert.equal(ip.code, 0, ip.stderr);
    assert.match(ip.stdout, /^ip utility, iproute2-\d/);
    const nft = await inImage(['nft', '--version']);
    assert.equal(nft.code, 0, nft.stderr);
    assert.match(nft.stdout, /^nftables v\d/);
    // Installed from apt without keeping its package lists.
    assert.deepEqual(
      readdirSync(inRoot('var/lib/apt/lists')).filter((f) => f !== 'partial' && f !== 'lock'),
      [],
    );
  });

  test("the agent's Node caps its young generation (NODE_OPTIONS), which bench/memory.ts shows halves the RSS after a burst", async () => {
    assert.ok(config.Env?.includes('NODE_OPTIONS=--max-semi-space-size=2'), `${config.Env}`);
    // In effect: after a stream of short-lived objects the young generation has stayed
    // small (2 x 2 MiB semi-spaces; without the cap it grows past 60 MiB).
    const allocate =
      "let k = []; for (let i = 0; i < 2e6; i++) { k.push({ i, s: 'x' + i }); if (k.length > 2e5) k = []; } " +
      "console.log(require('v8').getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').physical_space_size)";
    const r = await inImage(['node', '-e', allocate]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(Number(r.stdout) < 8 * 2 ** 20, `new space ${(Number(r.stdout) / 2 ** 20).toFixed(1)} MiB`);
  });

  test('the entrypoint is the ipip-operator command and CMD agent, which the chart passes its flags to', async () => {
    assert.deepEqual(config.Entrypoint, ['node', `/app/${PKG.bin['ipip-operator']}`]);
    assert.deepEqual(config.Cmd, ['agent']);
    assert.equal(config.WorkingDir, '/app');
    assert.ok(config.Env?.includes('NODE_ENV=production'), `${config.Env}`);
    // The chart's container sets no command (the entrypoint stays) and args starting with agent.
    const container = DAEMONSET.slice(DAEMONSET.indexOf('- name: agent'));
    assert.ok(!/^\s+command:/m.test(container), 'the chart does not replace the entrypoint');
    assert.match(container, /^\s+args:\n\s+- agent\n/m);
    const help = await entrypoint([...(config.Cmd ?? []), '--help']);
    assert.equal(help.code, 0, help.stderr);
    assert.match(help.stdout, /^Run the node agent\./);
  });

  test("it runs as uid 0, as the chart's securityContext sets (runAsUser: 0)", async () => {
    assert.match(DAEMONSET, /^\s+runAsUser: 0$/m);
    assert.match(DAEMONSET, /^\s+runAsNonRoot: false$/m);
    assert.ok(['', '0', 'root', undefined].includes(config.User), `the image sets no other user: ${config.User}`);
    const id = await inImage(['id', '-u']);
    assert.equal(id.code, 0, id.stderr);
    assert.equal(id.stdout.trim(), '0');
  });

  test('Node is the pinned one; npm, npx, corepack and yarn are not in the image', async () => {
    const node = await inImage(['node', '--version']);
    assert.equal(node.code, 0, node.stderr);
    assert.equal(node.stdout.trim(), `v${LOCK.packages['node_modules/node']?.version}`);
    assert.equal(node.stdout.trim(), process.version, 'the Node the tests run on');
    for (const path of ['usr/local/lib/node_modules', 'usr/local/include/node', 'opt/yarn'])
      assert.ok(!existsSync(inRoot(path)), `no /${path}`);
    assert.deepEqual(readdirSync(inRoot('usr/local/bin')), ['node']);
    const which = await inImage(['sh', '-c', 'command -v npm npx corepack yarn; true']);
    assert.equal(which.code, 0, which.stderr);
    assert.equal(which.stdout, '', 'no npm, npx, corepack or yarn on the PATH');
  });

  test('no node_modules: the bundle carries what it uses of them, and every chunk of dist/ loads', async () => {
    assert.ok(!existsSync(inRoot('app/node_modules')), 'no /app/node_modules');
    assert.deepEqual(
      readFileSync(inRoot('app/package.json'), 'utf8'),
      readFileSync(join(REPO, 'package.json'), 'utf8'),
    );
    // `version` and `plan` load only the main bundle (the cluster agent is a chunk of its own,
    // a dynamic import): load every chunk, so each import of the bundle is resolved in the image.
    // cli/main.js runs on import, so it is left to the tests above.
    const find = await run('find', [inRoot('app/dist'), '-name', '*.js', '!', '-path', '*/dist/cli/main.js']);
    const modules = find.stdout
      .trim()
      .split('\n')
      .map((p) => p.slice(rootfs.length));
    assert.ok(
      modules.some((m) => /^\/app\/dist\/cli\/chunks\/cluster-agent-\w+\.js$/.test(m)),
      `the cluster agent's chunk: ${modules.join(', ')}`,
    );
    const load = await inImage(
      ['node', '--input-type=module', '-e', 'for (const m of process.argv.slice(1)) await import(m);', ...modules],
      { user: '65534:65534' },
    );
    assert.equal(load.code, 0, `a chunk of /app/dist does not load in the image:\n${load.stderr}`);
  });

  test('the labels: title, licence, source and the version of package.json', () => {
    const labels = config.Labels ?? {};
    assert.equal(labels['org.opencontainers.image.version'], PKG.version);
    assert.equal(labels['org.opencontainers.image.title'], 'ipip-operator');
    assert.equal(labels['org.opencontainers.image.licenses'], PKG.license);
    assert.match(labels['org.opencontainers.image.source'] ?? '', /^https:\/\/github\.com\/ipip-operator\//);
  });

  test("no certificate of this machine's CA bundles, and none of the build's npm settings, is in the image", async (t) => {
    // Node's own root store is in the node binary, so the certificates looked for are the
    // machine's that Node does not carry (its TLS interception's among them).
    const builtin = new Set(rootCertificates.map((p) => p.replace(/\s+/g, '')));
    const bundles = machineBundles();
    const own = new Map<string, string>();
    for (const bundle of bundles) {
      for (const pem of readFileSync(bundle, 'utf8').match(
        /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g,
      ) ?? []) {
        if (builtin.has(pem.replace(/\s+/g, ''))) continue;
        const lines = pem.split('\n').filter((l) => /^[A-Za-z0-9+/]{64}$/.test(l));
        // A line from the middle of the body: unique to the certificate, not a common prefix.
        const line = lines[Math.floor(lines.length / 2)];
        if (line !== undefined) own.set(line, new X509Certificate(pem).subject.replace(/\n/g, ', '));
      }
    }
    t.diagnostic(
      `${own.size} certificates of ${bundles.join(', ')} that Node does not carry, looked for in every file`,
    );
    const patterns = join(dir, 'cert-lines');
    writeFileSync(patterns, [...own.keys()].join('\n'));
    if (own.size > 0) {
      // The search finds them where they are: in the machine's own bundle.
      const control = await run('grep', ['-lF', '-f', patterns, ...bundles]);
      assert.equal(control.code, 0, `grep finds the lines in ${bundles.join(', ')}: ${control.stderr}`);
      const found = await run('grep', ['-rlF', '-f', patterns, rootfs]);
      assert.equal(found.code, 1, `certificates of this machine in the image:\n${found.stdout}${found.stderr}`);
    }
    for (const path of ['etc/ssl', 'usr/local/etc/npmrc', 'usr/local/etc/build-ca.crt', 'root/.npmrc', 'etc/npmrc'])
      assert.ok(!existsSync(inRoot(path)), `no /${path}`);
    assert.deepEqual(
      readdirSync(inRoot('usr/local/etc')),
      [],
      '/usr/local/etc, where the build mounted its npm settings, is empty',
    );
    for (const env of config.Env ?? []) assert.doesNotMatch(env, /^(NODE_EXTRA_CA_CERTS|SSL_CERT|npm_config_)/i);
  });

  test('nothing under /app was written while the image ran', () => {
    assert.ok(
      appBefore.some((f) => f.includes('dist/cli/main.js')),
      `the bundle among the ${appBefore.length} files under /app`,
    );
    assert.deepEqual(snapshot(inRoot('app')), appBefore);
  });
});
