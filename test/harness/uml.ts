// User-Mode Linux guests for tests and the lab: a real Linux kernel as an ordinary
// process whose root is this machine's / (read-only). Commands run in the guest over its
// console through guest-shell.ts; each returns its exit code and output. Every guest boots
// the project's own lab kernel (lab-kernel.ts: Linux 6.12, everything built in, nftables for
// ip/ip6/inet) unless asked for its 'nonft' variant (nfnetlink and nf_tables as modules,
// without the ip, ip6 and inet families), for what must be proven on a kernel without
// nftables, or for Debian's linux.uml (6.1), which does not boot on a host with AMX.

import { spawn } from 'node:child_process';
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { labKernel } from './lab-kernel.ts';
import { inNetns, withPdeathsig } from './process-guard.ts';
import { REPO } from './repo.ts';

const READY = '@@GUEST-READY@@';
const RESULT = '@@GUEST-RESULT@@';
const ACK = '@@GUEST-ACK@@';
/** Debian's User-Mode Linux kernel (package user-mode-linux, Linux 6.1): boot it with `{ kernel: 'debian' }`. */
export const DEBIAN_UML = '/usr/bin/linux.uml';
export const INSTALL_HINT =
  'apt-get install -y iproute2 iputils-ping tcpdump (or run scripts/setup.sh, which installs them)';
const DEBIAN_UML_HINT =
  'apt-get install -y user-mode-linux kmod (or run scripts/setup.sh, which installs them): ' +
  "Debian's kernel and the insmod that loads its modules";

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Where a node's commands run: a guest, or a network namespace in one (namespaceShell). */
export interface Shell {
  sh(cmd: string, timeoutMs?: number): Promise<CommandResult>;
}

/** Like sh, but a non-zero exit is an error showing the command's output. */
export async function shOk(shell: Shell, cmd: string, timeoutMs?: number): Promise<string> {
  const r = await shell.sh(cmd, timeoutMs);
  if (r.code !== 0) throw new Error(`\`${cmd}\` exited ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r.stdout;
}

/** One shell word. */
export function shellQuote(word: string): string {
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

/** Commands in a network namespace of a guest (ip netns exec NS sh -c CMD). */
export function namespaceShell(guest: Guest, netns: string): Shell {
  return { sh: (cmd, timeoutMs) => guest.sh(`ip netns exec ${netns} sh -c ${shellQuote(cmd)}`, timeoutMs) };
}

/**
 * Loads modules of the guest's kernel that guest-init.sh does not (paths under
 * /usr/lib/uml/modules/VERSION/kernel, in dependency order: there is no modprobe), each
 * unless it is loaded already. Only Debian's kernel has modules: a kernel without that
 * dir (the lab kernel) has every driver built in, and nothing is loaded.
 */
export async function insmod(guest: Guest, modules: readonly string[]): Promise<void> {
  // A module loaded already, or built into this kernel (modules.builtin), is left alone.
  const each = modules.map((m) => {
    const name = m.replace(/^.*\//, '').replace(/\.ko$/, '');
    return `{ grep -q '^${name} ' /proc/modules || grep -qx 'kernel/${m}' "$M/modules.builtin" || insmod "$M/kernel/${m}"; }`;
  });
  await guest.ok(`M=${modulesDir(guest.kernel)}/$(uname -r); if [ -d "$M" ]; then ${each.join(' && ')}; fi`);
}

/** Where a kernel's modules are, by version: Debian's package, or modules/ beside a variant's binary (uml-kernel.sh). */
function modulesDir(kernel: string): string {
  return kernel === DEBIAN_UML ? '/usr/lib/uml/modules' : join(dirname(kernel), 'modules/lib/modules');
}

export interface GuestOptions {
  memMB?: number;
  /** Run linux.uml inside this host network namespace (several guests on one lab bridge). */
  hostNetns?: string;
  /** A tap device in hostNetns that becomes the guest's vec0. */
  tap?: string;
  bootTimeoutMs?: number;
  /**
   * The UML kernel to boot: by default the project's own (labKernel(), built once by
   * scripts/uml-kernel.sh); 'nonft' for its variant without nftables for ip, ip6 and inet
   * (nfnetlink and nf_tables as modules, for insmod()); 'debian' for Debian's linux.uml 6.1;
   * or the path of a kernel binary.
   */
  kernel?: string;
  /**
   * Boot on a writable root (guest-init.sh IPIP_ROOT=overlay): the host's / read-only below,
   * the guest's writes in its memory above, a real mount runc can pivot_root from. For
   * nodes that run containerd and a kubelet (kubelet-node.ts).
   */
  writableRoot?: boolean;
}

/** Fails with `hint` when one of these programs is not installed (guests see the machine's). */
export function requireCommands(names: readonly string[], hint: string): void {
  const dirs = ['/usr/bin', '/usr/sbin', '/bin', '/sbin'];
  const missing = names.filter((name) => !dirs.some((d) => existsSync(join(d, name))));
  if (missing.length > 0) throw new Error(`missing ${missing.join(', ')}: ${hint}`);
}

/**
 * Fails with how to install it when a part the kernel tests need is missing (the lab
 * kernel itself is built by labKernel(), which says what it needs when it cannot).
 */
export function requireUml(): void {
  requireCommands(['tcpdump', 'ping', 'ip'], INSTALL_HINT);
}

/**
 * The kernel binary a guest boots for GuestOptions.kernel. IPIP_GUEST_KERNEL ('debian' or
 * a path) changes the default, to compare a run on another kernel with the lab kernel's.
 */
export async function guestKernel(kernel: string | undefined = defaultKernel()): Promise<string> {
  if (kernel === undefined) return labKernel();
  if (kernel === 'nonft') return labKernel('nonft');
  const path = kernel === 'debian' ? DEBIAN_UML : kernel;
  if (path === DEBIAN_UML) requireCommands(['linux.uml', 'insmod'], DEBIAN_UML_HINT);
  else if (!existsSync(path)) throw new Error(`no UML kernel at ${path}`);
  return path;
}

function defaultKernel(): string | undefined {
  const chosen = process.env.IPIP_GUEST_KERNEL;
  return chosen === undefined || chosen === '' ? undefined : chosen;
}

/** Characters of a request per console line: under the 4095 a tty in canonical mode keeps of a line. */
const REQUEST_LINE = 2048;

/** The longest request (base64) sent over the console; a few lines, well within what it carries. */
const MAX_REQUEST = 8 * 1024;

export class Guest implements Shell {
  private readonly proc: ChildProcessWithoutNullStreams;
  private nextId = 1;
  private readonly waiting = new Map<number, (r: CommandResult) => void>();
  private readonly console: string[] = [];
  private exited = false;
  /**
   * Lines of requests not sent yet. The console loses input when several KiB arrive at
   * once (seen: four concurrent requests of 2 KiB each, most never arrived), so one line
   * is in flight at a time: guest-shell.ts acknowledges each line it reads.
   */
  private readonly outbox: string[] = [];
  private lineInFlight = false;

  /** A host dir (under /var/tmp, which the guest sees) for files too big for the console. */
  private staging: string | undefined;
  /** The kernel binary this guest runs (its processes' /proc/PID/exe). */
  readonly kernel: string;
  private constructor(proc: ChildProcessWithoutNullStreams, kernel: string) {
    this.proc = proc;
    this.kernel = kernel;
  }

  static async boot(options: GuestOptions = {}): Promise<Guest> {
    requireUml();
    const kernel = await guestKernel(options.kernel);
    const args = [
      `mem=${options.memMB ?? 512}M`,
      'rootfstype=hostfs',
      'ro',
      'quiet',
      'loglevel=1',
      `init=${join(REPO, 'test/harness/guest-init.sh')}`,
      'con=null',
      'con0=fd:0,fd:1',
      `IPIP_REPO=${REPO}`,
    ];
    if (options.writableRoot === true) args.push('IPIP_ROOT=overlay');
    // gro=1: UML's tap transport always asks the tap for TSO (TUNSETOFFLOAD), so the host
    // hands it TCP segments of up to 64 KiB, but without gro=1 it reads each into a buffer
    // of one MTU: every large segment arrived cut short and was dropped (the guest's
    // IpExtInTruncatedPkts), and a TCP burst to a guest waited for the sender's
    // retransmission timeout, 200 ms or more. An 11 KB list of the API server took 440 ms.
    if (options.tap !== undefined) args.push(`vec0:transport=tap,ifname=${options.tap},gro=1`);
    // The kernel kills the guest if the test process dies, even by SIGKILL. (Only its main
    // process: UML's helper processes outlive it; the cluster lab sweeps those by netns.)
    const [cmd, cmdArgs] = withPdeathsig(...inNetns(options.hostNetns, kernel, args));
    const proc = spawn(cmd, cmdArgs, { stdio: ['pipe', 'pipe', 'pipe'] });
    const guest = new Guest(proc, kernel);
    const ready = new Promise<void>((resolveReady, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`guest did not boot in time; console:\n${guest.console.slice(-30).join('\n')}`)),
        options.bootTimeoutMs ?? 60_000,
      );
      const lines = createInterface({ input: proc.stdout, crlfDelay: Infinity });
      lines.on('line', (raw) => {
        const line = raw.replace(/\r/g, '');
        if (line.includes(ACK)) {
          guest.lineInFlight = false;
          guest.sendNext();
          return;
        }
        if (line.includes(READY)) {
          clearTimeout(timer);
          resolveReady();
        }
        const at = line.indexOf(RESULT);
        if (at >= 0) {
          guest.settle(
            JSON.parse(Buffer.from(line.slice(at + RESULT.length).trim(), 'base64').toString()) as CommandResult & {
              id: number;
            },
          );
        } else if (line.trim() !== '') {
          guest.console.push(line);
          if (guest.console.length > 500) guest.console.shift();
        }
      });
      proc.stderr.on('data', (d: Buffer) => guest.console.push(d.toString()));
      proc.on('exit', (code) => {
        guest.exited = true;
        clearTimeout(timer);
        reject(new Error(`guest exited (${code}) while booting; console:\n${guest.console.slice(-30).join('\n')}`));
        for (const done of guest.waiting.values()) done({ code: -1, stdout: '', stderr: 'guest exited' });
        guest.waiting.clear();
      });
    });
    await ready;
    return guest;
  }

  /** Writes the next line of the outbox to the console, unless one is in flight. */
  private sendNext(): void {
    if (this.lineInFlight || this.exited) return;
    const line = this.outbox.shift();
    if (line === undefined) return;
    this.lineInFlight = true;
    this.proc.stdin.write(`${line}\n`);
  }

  /** Answers are matched to requests by id. */
  private settle(payload: CommandResult & { id: number }): void {
    const done = this.waiting.get(payload.id);
    if (done === undefined) return;
    this.waiting.delete(payload.id);
    done({ code: payload.code, stdout: payload.stdout, stderr: payload.stderr });
  }

  /**
   * Runs a shell command in the guest (as root, cwd the checkout). The console carries a
   * few KiB at a time and drops what overflows it, so a longer command is refused here
   * rather than left to hang: big data goes through writeFile.
   */
  sh(cmd: string, timeoutMs = 60_000): Promise<CommandResult> {
    if (this.exited) return Promise.resolve({ code: -1, stdout: '', stderr: 'guest has exited' });
    const request = Buffer.from(JSON.stringify({ id: this.nextId, cmd, timeoutMs })).toString('base64');
    if (request.length > MAX_REQUEST) {
      throw new Error(
        `guest: a command of ${cmd.length} characters is more than the console carries; write the data with writeFile`,
      );
    }
    const id = this.nextId++;
    return new Promise((done) => {
      this.waiting.set(id, done);
      // The console may be a tty in canonical mode, whose lines hold at most 4095
      // characters (the rest is dropped): a request goes in lines of at most REQUEST_LINE,
      // each but the last marked "+" (guest-shell.ts joins them).
      const lines: string[] = [];
      for (let at = 0; at < request.length; at += REQUEST_LINE) lines.push(request.slice(at, at + REQUEST_LINE));
      this.outbox.push(...lines.map((l, i) => `${i < lines.length - 1 ? '+' : ''}${l}`));
      this.sendNext();
    });
  }

  /** Like sh, but a non-zero exit is an error showing the command's output. */
  ok(cmd: string, timeoutMs?: number): Promise<string> {
    return shOk(this, cmd, timeoutMs);
  }

  /**
   * Writes a file in the guest. Small content goes over the console; more is written on
   * the host under /var/tmp, which the guest sees through its hostfs root, and copied there.
   */
  async writeFile(path: string, content: string): Promise<void> {
    const encoded = Buffer.from(content).toString('base64');
    if (encoded.length <= MAX_REQUEST / 2) {
      await this.ok(`printf %s '${encoded}' | base64 -d > '${path}'`);
      return;
    }
    this.staging ??= mkdtempSync(join(existsSync('/var/tmp') ? '/var/tmp' : tmpdir(), 'ipip-guest-files-'));
    const staged = join(this.staging, `file-${this.nextId}`);
    writeFileSync(staged, content);
    try {
      await this.ok(`cp '${staged}' '${path}'`);
    } finally {
      rmSync(staged, { force: true });
    }
  }

  /** False once the guest's kernel has exited (powered off, crashed or killed). */
  get running(): boolean {
    return !this.exited;
  }

  consoleTail(lines = 30): string {
    return this.console.slice(-lines).join('\n');
  }

  async stop(): Promise<void> {
    if (this.staging !== undefined) rmSync(this.staging, { recursive: true, force: true });
    if (this.exited) return;
    const gone = new Promise<void>((done) => this.proc.once('exit', () => done()));
    this.proc.stdin.write('exit\n');
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), 10_000);
    await gone;
    clearTimeout(timer);
  }
}
