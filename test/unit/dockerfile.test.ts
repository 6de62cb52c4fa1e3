// The container image, without a Docker engine: the Dockerfile read instruction by
// instruction (Node major as package.json's engines, iproute2 and nftables alone from apt, the entrypoint
// being the package's bin, the build context .dockerignore leaves), the Node binary's
// libraries checked against what the Debian base has. The image itself, built, is checked by
// test/cluster/image.test.ts (scripts/image.sh builds it with buildah).

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { join, posix } from 'node:path';
import { describe, test } from 'node:test';

const REPO = new URL('../../', import.meta.url).pathname;
const read = (file: string) => readFileSync(join(REPO, file), 'utf8');

interface PackageJson {
  version: string;
  license: string;
  engines: { node: string };
  bin: Record<string, string>;
  scripts: Record<string, string>;
}
const PKG = JSON.parse(read('package.json')) as PackageJson;

// ---- The Dockerfile, parsed ---------------------------------------------------------------

interface Instruction {
  keyword: string;
  args: string;
  line: number;
}
interface Stage {
  image: string;
  name: string | undefined;
  instructions: Instruction[];
}

/** Instructions with line continuations joined; comment lines dropped, as Docker drops them. */
function parseDockerfile(text: string): Instruction[] {
  const out: Instruction[] = [];
  let buffer = '';
  let start = 0;
  text.split('\n').forEach((raw, index) => {
    const line = raw.trimEnd();
    if (line.trimStart().startsWith('#') || (buffer === '' && line.trim() === '')) return;
    if (buffer === '') start = index + 1;
    if (line.endsWith('\\')) {
      buffer += `${line.slice(0, -1)} `;
      return;
    }
    buffer += line;
    const [, keyword, args] = /^\s*(\w+)\s+([\s\S]*)$/.exec(buffer) ?? [];
    assert.ok(keyword !== undefined && args !== undefined, `Dockerfile line ${start}: ${buffer}`);
    out.push({ keyword: keyword.toUpperCase(), args: args.replace(/\s+/g, ' ').trim(), line: start });
    buffer = '';
  });
  assert.equal(buffer, '', 'no dangling line continuation');
  return out;
}

function stagesOf(instructions: Instruction[]): Stage[] {
  const stages: Stage[] = [];
  for (const i of instructions) {
    if (i.keyword === 'FROM') {
      const [, image, name] = /^(?:--platform=\S+ )?(\S+)(?: AS (\S+))?$/i.exec(i.args) ?? [];
      assert.ok(image !== undefined, `FROM at line ${i.line}: ${i.args}`);
      stages.push({ image, name, instructions: [] });
    } else {
      assert.ok(stages.length > 0 || i.keyword === 'ARG', `${i.keyword} before the first FROM (line ${i.line})`);
      stages.at(-1)?.instructions.push(i);
    }
  }
  return stages;
}

const DOCKERFILE = read('Dockerfile');
const STAGES = stagesOf(parseDockerfile(DOCKERFILE));
const RUNTIME = STAGES.at(-1)!;
const stageNamed = (name: string) => STAGES.find((s) => s.name === name);
const all = (stage: Stage, keyword: string) => stage.instructions.filter((i) => i.keyword === keyword);

interface Copy {
  from: string | undefined;
  sources: string[];
  dest: string;
  line: number;
}

/** The COPY instructions of a stage, destinations made absolute against the WORKDIR at that point. */
function copies(stage: Stage): Copy[] {
  let workdir = '/';
  const out: Copy[] = [];
  for (const i of stage.instructions) {
    if (i.keyword === 'WORKDIR') workdir = posix.resolve(workdir, i.args);
    if (i.keyword !== 'COPY' && i.keyword !== 'ADD') continue;
    assert.equal(i.keyword, 'COPY', `ADD at line ${i.line}: COPY says what it does`);
    const words = i.args.split(' ');
    const flags = words.filter((w) => w.startsWith('--'));
    const paths = words.filter((w) => !w.startsWith('--'));
    const from = flags.find((f) => f.startsWith('--from='))?.slice('--from='.length);
    const dest = posix.resolve(workdir, paths.at(-1)!);
    out.push({
      from,
      sources: paths.slice(0, -1),
      dest: paths.at(-1)!.endsWith('/') ? `${dest}/` : dest,
      line: i.line,
    });
  }
  return out;
}

/** The final WORKDIR of a stage. */
function workdirOf(stage: Stage): string {
  return all(stage, 'WORKDIR').reduce((dir, i) => posix.resolve(dir, i.args), '/');
}

/** The shell commands of a stage's RUN instructions, split at && and ;. */
function commands(stage: Stage): string[][] {
  return all(stage, 'RUN').flatMap((i) =>
    i.args.split(/&&|;/).map((c) =>
      c
        .trim()
        .split(' ')
        .filter((w) => w !== ''),
    ),
  );
}

/** A command's words after `VAR=value` prefixes. */
function program(words: string[]): string[] {
  const i = words.findIndex((w) => !/^[A-Z_][A-Z0-9_]*=/.test(w));
  return i < 0 ? [] : words.slice(i);
}

// ---- .dockerignore ----------------------------------------------------------------------

const IGNORE = read('.dockerignore')
  .split('\n')
  .map((l) => l.trim())
  .filter((l) => l !== '' && !l.startsWith('#'));

/** Whether the build context leaves out a path (relative to the repo), as Docker's matcher would for these patterns. */
function ignored(path: string): boolean {
  const parts = path.split('/');
  return IGNORE.some((pattern) => {
    const re = new RegExp(
      `^${pattern
        .replace(/[.+^${}()|[\]\\]/g, '\\$&')
        .replace(/\*/g, '[^/]*')
        .replace(/\?/g, '[^/]')}$`,
    );
    // A pattern matching a directory leaves out everything under it.
    return parts.some((_, n) => re.test(parts.slice(0, n + 1).join('/')));
  });
}

const engineMajor = (): number => {
  const m = /^>=(\d+) <(\d+)$/.exec(PKG.engines.node);
  assert.ok(m !== null, `engines.node is ">=N <N+1": ${PKG.engines.node}`);
  assert.equal(Number(m[2]), Number(m[1]) + 1, 'engines.node allows one major');
  return Number(m[1]);
};

describe('Dockerfile', () => {
  test('every stage runs the Node major of package.json engines, on one Debian release', () => {
    const major = engineMajor();
    assert.equal(
      Number(process.versions.node.split('.')[0]),
      major,
      'the pinned Node running the tests is that major too',
    );
    const releases = new Set<string>();
    for (const stage of STAGES) {
      const node = /^node:(\d+)-(\w+)-slim$/.exec(stage.image);
      const debian = /^debian:(\w+)-slim$/.exec(stage.image);
      assert.ok(
        node !== null || debian !== null,
        `${stage.name ?? 'runtime'} is FROM node:N-<release>-slim or debian:<release>-slim, not ${stage.image}`,
      );
      if (node !== null) assert.equal(Number(node[1]), major, `${stage.image}: Node ${major}`);
      releases.add((node?.[2] ?? debian?.[1])!);
    }
    assert.deepEqual([...releases], ['bookworm']);
    assert.ok(STAGES.length >= 2, 'multi-stage');
    assert.ok(
      STAGES.slice(0, -1).every((s) => s.name !== undefined),
      'build stages are named',
    );
  });

  test('the runtime stage takes its node binary from a node stage, or is one', () => {
    if (RUNTIME.image.startsWith('node:')) return assert.match(RUNTIME.image, new RegExp(`^node:${engineMajor()}-`));
    const node = copies(RUNTIME).find((c) => c.dest === '/usr/local/bin/node');
    assert.ok(node !== undefined, 'COPY --from=<stage> /usr/local/bin/node /usr/local/bin/node');
    assert.deepEqual(node.sources, ['/usr/local/bin/node']);
    assert.match(
      stageNamed(node.from!)?.image ?? '',
      new RegExp(`^node:${engineMajor()}-`),
      `--from=${node.from} is a node:${engineMajor()} stage`,
    );
    assert.ok(!DOCKERFILE.includes('/usr/local/lib/node_modules'), 'npm and corepack stay behind');
  });

  test('the node binary needs only libraries Debian slim has: glibc, libstdc++6, libgcc-s1', () => {
    // The pinned Node (the npm package "node") is the same official nodejs.org Linux build the
    // node:24 image installs; the runtime stage copies that binary onto debian:bookworm-slim,
    // whose apt depends on libstdc++6 and libgcc-s1, and glibc is in every Debian image.
    const node = realpathSync(process.execPath);
    const ldd = spawnSync('ldd', [node], { encoding: 'utf8' });
    assert.equal(ldd.status, 0, `ldd ${node}: ${ldd.stderr}`);
    const libraries = [...ldd.stdout.matchAll(/(\/\S+) \(0x/g)].map((m) => m[1]!);
    assert.ok(
      libraries.some((l) => l.includes('libstdc++')),
      `ldd found the libraries:\n${ldd.stdout}`,
    );
    const packages = new Set<string>();
    for (const library of libraries) {
      const owner = spawnSync('dpkg', ['-S', realpathSync(library)], { encoding: 'utf8' });
      const fallback = owner.status === 0 ? owner : spawnSync('dpkg', ['-S', library], { encoding: 'utf8' });
      assert.equal(fallback.status, 0, `dpkg -S ${library}: ${fallback.stderr}`);
      packages.add(fallback.stdout.split(':')[0]!);
    }
    assert.deepEqual([...packages].sort(), ['libc6', 'libgcc-s1', 'libstdc++6']);
  });

  test('the runtime stage installs iproute2 and nftables and nothing else with apt, and keeps no package lists', () => {
    const runs = all(RUNTIME, 'RUN');
    assert.equal(runs.length, 1, `one RUN in the runtime stage: ${runs.map((r) => r.args).join(' | ')}`);
    const cmds = commands(RUNTIME).map(program);
    const installs = cmds.filter((c) => c[0] === 'apt-get' && c.includes('install'));
    assert.equal(installs.length, 1);
    const install = installs[0]!;
    assert.deepEqual(
      install.slice(install.indexOf('install') + 1).filter((w) => !w.startsWith('-')),
      ['iproute2', 'nftables'],
    );
    assert.ok(install.includes('--no-install-recommends') && install.includes('-y'), install.join(' '));
    assert.deepEqual(
      cmds.map((c) => c.slice(0, 2).join(' ')),
      ['apt-get update', 'apt-get install', 'rm -rf'],
    );
    assert.deepEqual(cmds.at(-1), ['rm', '-rf', '/var/lib/apt/lists/*']);
    for (const c of cmds) assert.ok(!['apt', 'dpkg', 'npm', 'curl', 'wget'].includes(c[0]!), c.join(' '));
  });

  test('the build stage: npm ci without scripts, then `npm run bundle`; the runtime stage takes dist/ alone', () => {
    const npmCis = STAGES.slice(0, -1).flatMap((s) =>
      commands(s)
        .filter((c) => c[0] === 'npm' && c[1] === 'ci')
        .map((c) => ({ stage: s.name, c })),
    );
    assert.equal(npmCis.length, 1, 'one npm ci');
    assert.ok(npmCis[0]!.c.includes('--ignore-scripts'), npmCis[0]!.c.join(' '));
    // The bundle is package.json's own, as `npm run bundle` makes it: the entry the bin names.
    const bundles = STAGES.flatMap(commands).filter((c) => c.join(' ') === 'npm run bundle');
    assert.equal(bundles.length, 1, 'a `npm run bundle` step');
    const bundle = PKG.scripts.bundle ?? '';
    assert.match(bundle, /^esbuild src\/cli\/main\.ts --bundle /);
    assert.ok(bundle.includes('--outdir=dist/cli') && bundle.includes("--entry-names='[name]'"), bundle);
    assert.equal(PKG.bin['ipip-operator'], 'dist/cli/main.js', 'the bundle is where the bin points');
    // The runtime stage: the bundle and package.json (for `version`), no node_modules.
    const fromBuild = copies(RUNTIME).filter((c) => c.from === npmCis[0]!.stage);
    assert.deepEqual(
      fromBuild.map((c) => `${c.sources.join(' ')} -> ${c.dest}`),
      ['/usr/local/bin/node -> /usr/local/bin/node', '/src/dist -> /app/dist'],
    );
    assert.ok(!copies(RUNTIME).some((c) => c.dest.includes('node_modules')), 'no node_modules in the image');
  });

  test('the entrypoint is the package bin run by node; CMD agent; production env; labels; no USER forced', () => {
    assert.deepEqual(JSON.parse(all(RUNTIME, 'ENTRYPOINT').at(-1)!.args), [
      'node',
      posix.join(workdirOf(RUNTIME), PKG.bin['ipip-operator']!),
    ]);
    assert.equal(workdirOf(RUNTIME), '/app');
    assert.deepEqual(JSON.parse(all(RUNTIME, 'CMD').at(-1)!.args), ['agent']);
    assert.ok(all(RUNTIME, 'ENV').some((e) => e.args === 'NODE_ENV=production'));
    assert.deepEqual(all(RUNTIME, 'USER'), []);
    const labels = Object.fromEntries(
      all(RUNTIME, 'LABEL').flatMap((l) => [...l.args.matchAll(/([\w.-]+)="([^"]*)"/g)].map((m) => [m[1]!, m[2]!])),
    );
    assert.equal(labels['org.opencontainers.image.title'], 'ipip-operator');
    assert.equal(labels['org.opencontainers.image.licenses'], PKG.license);
    // biome-ignore lint/suspicious/noTemplateCurlyInString: the Dockerfile's build argument, as written there
    assert.equal(labels['org.opencontainers.image.version'], '${VERSION}');
    assert.match(labels['org.opencontainers.image.source'] ?? '', /^https:\/\/github\.com\//);
    assert.ok((labels['org.opencontainers.image.description'] ?? '').length > 20);
    assert.deepEqual(
      all(RUNTIME, 'ARG').map((a) => a.args),
      [`VERSION=${PKG.version}`],
      "the default VERSION is package.json's",
    );
  });

  test('.dockerignore leaves out node_modules, dist, .git and test artefacts, and keeps what the COPY lines need', () => {
    for (const path of [
      'node_modules',
      'node_modules/x/y.js',
      'dist/cli/main.js',
      '.git',
      'test/unit/dashboard.test.ts',
      'bench',
      'docs',
      '.ci',
      'coverage',
      'npm-debug.log',
    ]) {
      assert.ok(ignored(path), `${path} is left out of the build context`);
    }
    for (const path of ['package.json', 'package-lock.json', 'src/cli/main.ts', 'crds/ipiptunnels.yaml']) {
      assert.ok(!ignored(path), `${path} is in the build context`);
    }
    assert.ok(!IGNORE.some((p) => p.startsWith('!')), 'no exceptions (the matcher above does not read them)');
    const fromContext = STAGES.flatMap(copies).filter((c) => c.from === undefined);
    assert.ok(fromContext.length >= 3);
    for (const copy of fromContext) {
      for (const source of copy.sources) {
        assert.ok(existsSync(join(REPO, source)), `line ${copy.line}: ${source} exists in the checkout`);
        assert.ok(!ignored(source), `line ${copy.line}: ${source} is not left out by .dockerignore`);
      }
    }
  });
});
