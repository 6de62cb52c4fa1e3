// The nft driver (src/dataplane/nft/driver.ts) on real kernels, driven directly: the lab
// kernel (Linux 6.12 with nftables for ip, nat and masquerade) holds the agent's table, and
// its nonft variant (nfnetlink and nf_tables as modules, nf_tables without the ip, ip6 and
// inet families, as Debian's linux.uml 6.1 has it) is found unable to before anything is
// written. The driver runs in the guest, in a small server process this test
// starts there (curl from the guest's shell asks it), so its monitor lives across steps.

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { after, describe, test } from 'node:test';
import type { NftState, ObservedRules } from '../../src/model/kernel.ts';
import { parseNftListOutput } from '../../src/dataplane/nft/parse.ts';
import { FOREIGN_NFT_TABLE, foreignIptablesCommands, IPTABLES_LEGACY_HINT } from '../harness/foreign.ts';
import { labKernel } from '../harness/lab-kernel.ts';
import { REPO } from '../harness/repo.ts';
import { eventually, StartedByTest } from '../harness/support.ts';
import { Guest, insmod, requireCommands, shellQuote } from '../harness/uml.ts';

const PORT = 9481;

/**
 * The guest's side: an NftDriver behind HTTP on the guest's loopback. POST {op: observe},
 * {op: apply, table} (one action per tunnel, or one delete for an empty table: the driver
 * writes the table all the same), {op: events} (the monitor's answers so far), {op: commands}.
 */
const SERVER = `
import { createServer } from 'node:http';
import { NftDriver } from ${JSON.stringify(join(REPO, 'src/dataplane/nft/driver.ts'))};
const commands = [];
const events = [];
const monitorErrors = [];
const driver = new NftDriver({
  timeoutMs: 20000,
  onCommand: (tool, purpose, _seconds, ok) => commands.push(tool + ' ' + purpose + ' ' + (ok ? 'ok' : 'failed')),
  onMonitorError: (error) => monitorErrors.push(error),
});
driver.watch(
  ({ concernsUs, change }) => events.push(concernsUs + ' ' + change.kind + (change.kind === 'nft' && change.own ? ' own' : '')),
  () => ({ links: new Set(), prefixes: new Set() }),
);
const action = (tunnel, table) => ({ tool: 'nft', kind: 'rules', verb: 'update', tunnel, link: '', detail: '', rules: undefined, table });
createServer(async (req, res) => {
  let body = '';
  for await (const chunk of req) body += chunk;
  const q = JSON.parse(body);
  let answer;
  try {
    if (q.op === 'observe') answer = (await driver.observe(q.hint)) ?? 'not read';
    else if (q.op === 'apply') {
      const actions = q.table.length === 0 ? [action('gone', [])] : q.table.map((r) => action(r.tunnel, q.table));
      answer = (await driver.apply(actions)).map((r) => r.error ?? null);
    } else if (q.op === 'events') answer = events;
    else if (q.op === 'commands') answer = commands;
    else if (q.op === 'monitorErrors') answer = monitorErrors;
    else answer = 'ready';
  } catch (error) {
    answer = { thrown: error.message };
  }
  res.end(JSON.stringify(answer));
}).listen(${PORT}, '127.0.0.1');
`;

/** The pids of the driver's kept reader (`nft -j -p -i`) in the guest. */
async function readerPids(guest: Guest): Promise<string[]> {
  return (await guest.sh("pgrep -f '^nft -j -p -i$'")).stdout
    .trim()
    .split('\n')
    .filter((p) => p !== '');
}

/** The table as a new `nft` process reads it, in the driver's terms. */
async function freshRead(guest: Guest): Promise<NftState> {
  const r = await guest.sh('nft -j -p list table ip ipip-operator');
  if (r.code === 0) return { available: true, table: true, rules: parseNftListOutput(r.stdout) };
  assert.match(r.stderr, /No such file or directory/);
  return { available: true, table: false, rules: [] };
}

/** The driver in a guest, asked over HTTP. */
class GuestDriver {
  private readonly guest: Guest;
  private constructor(guest: Guest) {
    this.guest = guest;
  }

  static async start(guest: Guest): Promise<GuestDriver> {
    await guest.writeFile('/run/nft-driver-server.ts', SERVER);
    await guest.ok(
      'node /run/nft-driver-server.ts > /run/nft-driver-server.log 2>&1 & echo $! > /run/nft-driver-server.pid',
    );
    const driver = new GuestDriver(guest);
    await eventually(
      'the driver server in the guest',
      async () => (await driver.ask<string>({ op: 'ready' })) === 'ready',
      {
        timeoutMs: 30_000,
        intervalMs: 200,
        context: () => guest.ok('cat /run/nft-driver-server.log'),
      },
    );
    return driver;
  }

  async ask<T>(request: object): Promise<T> {
    const out = await this.guest.ok(
      `curl -sS --max-time 30 --data-binary ${shellQuote(JSON.stringify(request))} http://127.0.0.1:${PORT}/`,
    );
    return JSON.parse(out) as T;
  }

  observe = () => this.ask<NftState>({ op: 'observe' });
  /** observe with the hint that no tunnel can want rules: "not read" when it ran nothing. */
  observeWithoutRules = () => this.ask<NftState | 'not read'>({ op: 'observe', hint: { rules: false } });
  /** Each action's error, or null. */
  apply = (table: readonly ObservedRules[]) => this.ask<(string | null)[]>({ op: 'apply', table });
  /** The monitor's events so far, each "concernsUs kind[ own]": "false nft own" for a write of the driver's. */
  events = () => this.ask<string[]>({ op: 'events' });
  commands = () => this.ask<string[]>({ op: 'commands' });

  async stop(): Promise<void> {
    await this.guest.ok('kill $(cat /run/nft-driver-server.pid)');
  }
}

/** A mesh that filters and masquerades, and an endpoint that masquerades: the table's every part. */
const TABLE: ObservedRules[] = [
  {
    tunnel: 'edge',
    masquerade: { link: 'ipip-edge', sources: ['10.40.0.0/16', '172.0.2.2/32'] },
    masqueraded: { packets: 3, bytes: 180 },
  },
  {
    tunnel: 'mesh',
    peerFilter: { local: '192.168.40.1', allowed: ['192.168.40.2', '192.168.40.3'] },
    masquerade: { link: 'ipip-mesh', sources: ['10.30.0.0/24', '172.0.1.2/32', '172.0.1.3/32'] },
    dropped: { packets: 7, bytes: 588 },
    masqueraded: { packets: 0, bytes: 0 },
  },
];

const IPTABLES = '/usr/sbin/iptables-legacy';

/** What the agent must never change: the foreign nft table and the iptables-legacy rules, as text. */
const foreignState = async (guest: Guest) => {
  const nft = await guest.ok('nft list table inet foreign');
  // Without the "# Generated ... on DATE" lines and the chains' policy counters ([packets:bytes]), which traffic moves.
  const legacy = await guest.ok(`${IPTABLES}-save | grep -v '^#'`);
  return `${nft}${legacy.replace(/ \[\d+:\d+\]$/gm, '')}`;
};

/** The rules of the agent's table, as the kernel lists them (counters included). */
async function ourRules(guest: Guest): Promise<Record<string, unknown>[]> {
  const listed = JSON.parse(await guest.ok('nft -j -p list table ip ipip-operator')) as {
    nftables: Record<string, Record<string, unknown>>[];
  };
  return listed.nftables.flatMap((o) => (o.rule === undefined ? [] : [o.rule]));
}

describe('the nft driver on the lab kernel (6.12)', { timeout: 180_000 }, () => {
  const lab = new StartedByTest<{ guest: Guest; driver: GuestDriver; foreign: string }>('lab kernel guest');
  after(async () => {
    await lab.started?.guest.stop();
  });

  test('observe without the table: available, no table; every read from one kept `nft -j -p -i`', async () => {
    requireCommands(['nft', 'curl'], 'apt-get install -y nftables curl (or run scripts/setup.sh)');
    if (!existsSync(IPTABLES)) throw new Error(`no ${IPTABLES}: ${IPTABLES_LEGACY_HINT}`);
    const { driver } = await lab.start(async () => {
      const guest = await Guest.boot({ kernel: await labKernel() });
      try {
        // Someone else's firewall, in nftables and in iptables-legacy, and a stranger that sends IPIP.
        await guest.writeFile('/run/foreign.nft', FOREIGN_NFT_TABLE);
        await guest.ok('nft -f /run/foreign.nft');
        for (const cmd of foreignIptablesCommands(IPTABLES)) await guest.ok(cmd);
        await guest.ok(
          [
            'ip netns add stranger',
            'ip link add veth-h type veth peer name veth-s netns stranger',
            'ip addr add 192.168.40.1/24 dev veth-h && ip link set veth-h up',
            'ip -n stranger addr add 192.168.40.9/24 dev veth-s && ip -n stranger link set veth-s up',
            'ip -n stranger link add name tun-s type ipip local 192.168.40.9 remote 192.168.40.1',
            'ip -n stranger link set tun-s up && ip -n stranger addr add 10.9.9.9/32 dev tun-s && ip -n stranger route add 10.9.9.1/32 dev tun-s',
          ].join(' && '),
        );
        const foreign = await foreignState(guest);
        return { guest, driver: await GuestDriver.start(guest), foreign };
      } catch (error) {
        await guest.stop();
        throw error;
      }
    });
    const { guest } = lab.get();
    assert.deepEqual(await driver.observe(), { available: true, table: false, rules: [] });
    // The first observe probed the kernel (nft -c) and read from the kept process; the next only reads.
    assert.deepEqual(await driver.commands(), ['nft observe ok', 'nft observe ok']);
    const reader = await readerPids(guest);
    assert.equal(reader.length, 1, 'one kept reader');
    assert.deepEqual(await driver.observe(), { available: true, table: false, rules: [] });
    assert.deepEqual(await driver.commands(), ['nft observe ok', 'nft observe ok', 'nft observe ok']);
    assert.deepEqual(await readerPids(guest), reader, 'the same process');
  });

  test('apply writes the table; observe reads back exactly that, counters included', async () => {
    const { guest, driver } = lab.get();
    assert.deepEqual(await driver.apply(TABLE), [null, null]);
    assert.deepEqual(await driver.observe(), { available: true, table: true, rules: TABLE });
    assert.match(
      await guest.ok('nft list table ip ipip-operator'),
      /comment "managed by ipip-operator; every change replaces the whole table"/,
    );
  });

  test("a stranger's IPIP is dropped and counted; a rewrite keeps the counts and leaves one copy of each rule", async () => {
    const { guest, driver } = lab.get();
    // 3 echo requests through the stranger's tunnel: 3 IPIP packets of 20 + 84 bytes, no answer. (Not -w: with
    // a deadline, ping sends until it ends, whatever -c says.)
    await guest.sh('ip netns exec stranger ping -q -c 3 -i 0.2 -W 1 10.9.9.1');
    const counted = await eventually(
      'the drop counter to count 3 packets more',
      async () => {
        const state = await driver.observe();
        const mesh = state.available ? state.rules.find((r) => r.tunnel === 'mesh') : undefined;
        return mesh?.dropped?.packets === 10 ? state : undefined;
      },
      { timeoutMs: 10_000, intervalMs: 200 },
    );
    const after3 = counted.available ? counted.rules : [];
    assert.deepEqual(after3.find((r) => r.tunnel === 'mesh')?.dropped, { packets: 10, bytes: 588 + 3 * 104 });
    // The planner passes the counters it read; the same table written again, twice.
    assert.deepEqual(await driver.apply(after3), [null, null]);
    assert.deepEqual(await driver.apply(after3), [null, null]);
    assert.deepEqual(await driver.observe(), { available: true, table: true, rules: after3 });
    assert.deepEqual(
      (await ourRules(guest)).map((r) => `${r.chain} ${r.comment}`),
      ['prerouting mesh', 'postrouting edge', 'postrouting mesh'],
    );
  });

  test("the monitor wakes for a hand flush of our table, not for a change of the foreign table, nor for the driver's own writes", async () => {
    const { guest, driver } = lab.get();
    const before = (await driver.events()).length;
    await guest.ok(
      'nft add element inet foreign blocked "{ 203.0.113.20 }" && nft delete element inet foreign blocked "{ 203.0.113.20 }"',
    );
    await guest.ok('nft flush table ip ipip-operator');
    // One event per transaction, in order: the foreign element added, then deleted, then the flush of ours.
    const expected = ['false elsewhere', 'false elsewhere', 'true nft'];
    const events = await eventually(
      'the monitor to report the foreign change and the flush',
      async () => {
        const e = (await driver.events()).slice(before);
        return isDeepStrictEqual(e.slice(-expected.length), expected) ? e : undefined;
      },
      {
        timeoutMs: 15_000,
        intervalMs: 200,
        context: async () => `events: ${JSON.stringify((await driver.events()).slice(before))}`,
      },
    );
    assert.deepEqual(events, expected, 'nothing else came meanwhile');
    // Every write of the driver's so far was one transaction, each reported as its own and no concern.
    const writes = (await driver.commands()).filter((c) => c === 'nft apply ok').length;
    const earlier = (await driver.events()).slice(0, before);
    assert.ok(writes > 0);
    assert.deepEqual(
      earlier.filter((e) => e.endsWith(' own')),
      Array.from({ length: writes }, () => 'false nft own'),
    );
    assert.deepEqual(
      earlier.filter((e) => !e.endsWith(' own') && e !== 'false elsewhere'),
      [],
      'no other transaction touched our table before',
    );
    // What a reconcile then reads: sets and chains left, no rule, so nothing recognised.
    const state = await driver.observe();
    assert.deepEqual(state.available && state.rules.map((r) => [r.tunnel, r.peerFilter, r.masquerade]), [
      ['(no tunnel)', undefined, undefined],
      ['edge', undefined, undefined],
      ['mesh', undefined, undefined],
    ]);
  });

  test('an empty table removes ours; the foreign table and the iptables-legacy rules are byte for byte as they were', async () => {
    const { guest, driver, foreign } = lab.get();
    assert.deepEqual(await driver.apply([]), [null]);
    assert.deepEqual(await driver.observe(), { available: true, table: false, rules: [] });
    assert.doesNotMatch(await guest.ok('nft list tables'), /ipip-operator/);
    // Removing what is not there is no error either.
    assert.deepEqual(await driver.apply([]), [null]);
    assert.equal(await foreignState(guest), foreign);
    assert.match(foreign, /table inet foreign/);
    assert.match(foreign, /-A INPUT -s 203\.0\.113\.9\/32 -p tcp -m tcp --dport 22 -j DROP/);
    assert.deepEqual(
      (await driver.commands()).filter((c) => c.startsWith('nft apply')),
      ['nft apply ok', 'nft apply ok', 'nft apply ok', 'nft apply ok', 'nft apply ok'],
    );
  });
  test('with no tunnel that can want rules, no nft runs while the table cannot be there; a table made by hand is read', async () => {
    const { guest, driver } = lab.get();
    // The last write removed the table: nothing to read, and nothing is run; the kept reader ends.
    const before = (await driver.commands()).length;
    const started = async () => (await driver.commands()).slice(before).filter((c) => !c.startsWith('nft reader'));
    assert.equal(await driver.observeWithoutRules(), 'not read');
    assert.deepEqual(await started(), [], 'no nft process');
    await eventually('the kept reader to end', async () => ((await readerPids(guest)).length === 0 ? true : undefined));
    assert.deepEqual((await driver.commands()).slice(before), ['nft reader ok'], 'ended as stopped, not failed');
    // Someone makes the table: the monitor tells, and the next observe reads it (to remove it, a pass would plan).
    const events = (await driver.events()).length;
    await guest.ok('nft add table ip ipip-operator');
    await eventually(
      'the monitor to report the hand-made table',
      async () => ((await driver.events()).slice(events).includes('true nft') ? true : undefined),
      {
        timeoutMs: 15_000,
        intervalMs: 200,
        context: async () => JSON.stringify((await driver.events()).slice(events)),
      },
    );
    // A table the driver did not write is a part of no tunnel's, which a pass removes.
    assert.deepEqual(await driver.observeWithoutRules(), {
      available: true,
      table: true,
      rules: [{ tunnel: '(no tunnel)' }],
    });
    assert.deepEqual(await started(), ['nft observe ok'], 'read by a process of its own');
    assert.deepEqual(await readerPids(guest), [], 'no kept reader meanwhile');
    assert.deepEqual(await driver.apply([]), [null]);
  });
});

describe('the kept reader of the nft driver on the lab kernel', { timeout: 180_000 }, () => {
  const lab = new StartedByTest<{ guest: Guest; driver: GuestDriver }>('lab kernel guest');
  after(async () => {
    await lab.started?.guest.stop();
  });

  test('it reads what other processes changed between reads, as a new `nft` reads it; one process throughout', async () => {
    requireCommands(['nft', 'curl'], 'apt-get install -y nftables curl (or run scripts/setup.sh)');
    const { guest, driver } = await lab.start(async () => {
      const guest = await Guest.boot({ kernel: await labKernel() });
      try {
        return { guest, driver: await GuestDriver.start(guest) };
      } catch (error) {
        await guest.stop();
        throw error;
      }
    });
    assert.deepEqual(await driver.apply(TABLE), [null, null]);
    assert.deepEqual(await driver.observe(), { available: true, table: true, rules: TABLE });
    const reader = await readerPids(guest);
    assert.equal(reader.length, 1);
    await guest.ok('nft list table ip ipip-operator > /run/ours.nft');
    const steps = [
      'nft add element ip ipip-operator peers-mesh "{ 192.168.40.7 }"',
      'nft flush chain ip ipip-operator postrouting',
      'nft delete table ip ipip-operator',
      'nft add table ip someone-elses',
      'nft -f /run/ours.nft',
    ];
    for (const step of steps) {
      await guest.ok(step);
      assert.deepEqual(await driver.observe(), await freshRead(guest), `after ${step}`);
    }
    assert.match(await guest.ok('nft list tables'), /table ip ipip-operator/, 'the last step made it again');
    assert.deepEqual(await readerPids(guest), reader, 'the same process');
    // Every read was the kept process's own, none of them unsure (which would have been a read by a process).
    assert.deepEqual(
      (await driver.commands()).filter((c) => c.startsWith('nft observe')),
      Array.from({ length: 2 + steps.length }, () => 'nft observe ok'),
    );
  });
});

describe("the nft driver on a kernel whose nf_tables has no ip family (the lab kernel's nonft variant)", {
  timeout: 180_000,
}, () => {
  const nonft = new StartedByTest<Guest>('nonft guest');
  after(async () => {
    await nonft.started?.stop();
  });

  test('observe reports nftables unavailable, before any write; apply runs nothing', async () => {
    requireCommands(['nft', 'curl'], 'apt-get install -y nftables curl (or run scripts/setup.sh)');
    const guest = await nonft.start(() => Guest.boot({ kernel: 'nonft' }));

    // As booted, without nfnetlink: nft cannot even open its socket.
    const bare = await GuestDriver.start(guest);
    const state = await bare.observe();
    assert.equal(state.available, false);
    assert.match(
      state.available ? '' : state.why,
      /nftables table.*Unable to initialize Netlink socket: Protocol not supported/,
    );
    await bare.stop();

    // With nf_tables loaded, which has the netdev family, not ip: the kernel refuses the ip family.
    await insmod(guest, ['net/netfilter/nfnetlink.ko', 'net/netfilter/nf_tables.ko']);
    await guest.ok('nft add table netdev someone-elses');
    const ruleset = await guest.ok('nft list ruleset');
    const driver = await GuestDriver.start(guest);
    const refused = await driver.observe();
    assert.equal(refused.available, false);
    const why = refused.available ? '' : refused.why;
    assert.match(why, /cannot hold the agent's nftables table .*Operation not supported/);
    assert.deepEqual(await driver.apply(TABLE), [why, why]);
    // The probe ran (nft -c, refused); nothing else did, and the ruleset is as it was.
    assert.deepEqual(await driver.commands(), ['nft observe failed']);
    assert.equal(await guest.ok('nft list ruleset'), ruleset);
    assert.match(ruleset, /table netdev someone-elses/);
  });
});
