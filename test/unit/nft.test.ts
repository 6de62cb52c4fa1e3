// The agent's nftables table: the renderer's text (golden), its refusal of anything that is
// not a plain name, address, prefix or number, and the parser and monitor filter on output
// captured from the lab kernel (scripts/uml-kernel.sh: Linux 6.12.117, nftables 1.0.6).
// The fixtures came from one guest: TABLE and LONG_TABLE below rendered by nftScript and
// loaded with `nft -f`, read back with `nft -j -p list table ip ipip-operator` after each
// step named in nft-list-uml-6.12.json. The monitor's lines (`nft monitor`, text: only it
// names the process of each transaction) are below, from a guest of the same kernel.

import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { KEPT_READ, KeptAnswer, NftDriver, nftError } from '../../src/dataplane/nft/driver.ts';
import type { KernelEvent } from '../../src/model/kernel.ts';
import { NftTransactions, parseNftMonitorLine } from '../../src/dataplane/nft/monitor.ts';
import { parseNftTable } from '../../src/dataplane/nft/parse.ts';
import { nftScript } from '../../src/dataplane/nft/render.ts';
import { renderPlan } from '../../src/dataplane/render.ts';
import type { NftAction } from '../../src/model/action.ts';
import type { ObservedRules } from '../../src/model/kernel.ts';
import { NO_TUNNEL } from '../../src/model/ownership.ts';

/** What the fixtures were made from: a masquerading endpoint, a mesh that masquerades too, a mesh filter alone. */
const TABLE: ObservedRules[] = [
  {
    tunnel: 'edge',
    masquerade: { link: 'ipip-edge', sources: ['10.40.0.0/16', '172.0.2.2/32'] },
    masqueraded: { packets: 3, bytes: 180 },
  },
  {
    tunnel: 'mesh',
    peerFilter: { local: '192.168.40.1', allowed: ['192.168.40.10', '192.168.40.2', '192.168.40.3'] },
    masquerade: { link: 'ipip-mesh', sources: ['10.30.0.0/24', '172.0.1.2/32', '172.0.1.3/32'] },
    dropped: { packets: 7, bytes: 588 },
    masqueraded: { packets: 2, bytes: 120 },
  },
  { tunnel: 'solo', peerFilter: { local: '192.168.40.1', allowed: ['192.168.40.4'] } },
];
/** The longest names there are (a 63-character tunnel, a 15-character link), with empty sets. */
const LONG = `${'a'.repeat(61)}.b`;
const LONG_TABLE: ObservedRules[] = [
  {
    tunnel: LONG,
    peerFilter: { local: '10.0.0.1', allowed: [] },
    masquerade: { link: 'abcdefghijklmno', sources: [] },
  },
];

const fixture = JSON.parse(readFileSync(new URL('./fixtures/nft-list-uml-6.12.json', import.meta.url), 'utf8')) as {
  captures: Record<string, unknown>;
};
const captured = (name: string) => {
  const c = fixture.captures[name];
  assert.ok(Array.isArray(c), `no capture ${name}`);
  return c;
};

/** The kernel's view of TABLE: every rule has a counter, 0 where none was given. */
const ZERO = { packets: 0, bytes: 0 };
const TABLE_READ: ObservedRules[] = [TABLE[0]!, TABLE[1]!, { ...TABLE[2]!, dropped: ZERO }];

describe('nftScript: the whole table as one transaction', () => {
  test('golden: create-if-missing, delete, then every set and rule, counters carried', () => {
    assert.deepEqual(nftScript(TABLE), [
      'table ip ipip-operator',
      'delete table ip ipip-operator',
      'table ip ipip-operator {',
      '\tcomment "managed by ipip-operator; every change replaces the whole table"',
      '\tset masq-edge {',
      '\t\ttype ipv4_addr',
      '\t\tflags interval',
      '\t\telements = { 10.40.0.0/16, 172.0.2.2/32 }',
      '\t}',
      '\tset peers-mesh {',
      '\t\ttype ipv4_addr',
      '\t\telements = { 192.168.40.10, 192.168.40.2, 192.168.40.3 }',
      '\t}',
      '\tset masq-mesh {',
      '\t\ttype ipv4_addr',
      '\t\tflags interval',
      '\t\telements = { 10.30.0.0/24, 172.0.1.2/32, 172.0.1.3/32 }',
      '\t}',
      '\tset peers-solo {',
      '\t\ttype ipv4_addr',
      '\t\telements = { 192.168.40.4 }',
      '\t}',
      '\tchain prerouting {',
      '\t\ttype filter hook prerouting priority raw; policy accept;',
      '\t\tip protocol 4 ip daddr 192.168.40.1 ip saddr != @peers-mesh counter packets 7 bytes 588 drop comment "mesh"',
      '\t\tip protocol 4 ip daddr 192.168.40.1 ip saddr != @peers-solo counter packets 0 bytes 0 drop comment "solo"',
      '\t}',
      '\tchain postrouting {',
      '\t\ttype nat hook postrouting priority srcnat; policy accept;',
      '\t\tip saddr @masq-edge oifname != "ipip-edge" counter packets 3 bytes 180 masquerade comment "edge"',
      '\t\tip saddr @masq-mesh oifname != "ipip-mesh" counter packets 2 bytes 120 masquerade comment "mesh"',
      '\t}',
      '}',
    ]);
  });

  test('a chain only when a tunnel needs it; empty sets have no elements line', () => {
    const script = nftScript(LONG_TABLE.map((r) => ({ tunnel: r.tunnel, peerFilter: r.peerFilter! })));
    assert.deepEqual(script.slice(3), [
      '\tcomment "managed by ipip-operator; every change replaces the whole table"',
      `\tset peers-${LONG} {`,
      '\t\ttype ipv4_addr',
      '\t}',
      '\tchain prerouting {',
      '\t\ttype filter hook prerouting priority raw; policy accept;',
      `\t\tip protocol 4 ip daddr 10.0.0.1 ip saddr != @peers-${LONG} counter packets 0 bytes 0 drop comment "${LONG}"`,
      '\t}',
      '}',
    ]);
  });

  test('an empty table, or parts with neither rule, is the removal: create-if-missing and delete', () => {
    const removal = ['table ip ipip-operator', 'delete table ip ipip-operator'];
    assert.deepEqual(nftScript([]), removal);
    assert.deepEqual(nftScript([{ tunnel: 'mesh' }, { tunnel: 'edge' }]), removal);
    // A part with neither field adds nothing beside the others.
    assert.deepEqual(nftScript([{ tunnel: 'aaa' }, ...TABLE]), nftScript(TABLE));
  });

  test('counters are written in digits up to 2^64 - 1', () => {
    const big = nftScript([{ ...TABLE[2]!, dropped: { packets: 1e19, bytes: 2 ** 63 } }]);
    assert.match(big.join('\n'), /counter packets 10000000000000000000 bytes 9223372036854775808 drop/);
  });

  test('plan prints it as a here-document for nft -f -', () => {
    const action: NftAction = {
      tool: 'nft',
      kind: 'rules',
      verb: 'delete',
      tunnel: 'mesh',
      link: 'ipip-mesh',
      detail: '',
      rules: undefined,
      table: [],
    };
    assert.deepEqual(renderPlan([action, { ...action, tunnel: 'edge' }]), [
      "nft -f - <<'EOF'",
      'table ip ipip-operator',
      'delete table ip ipip-operator',
      'EOF',
    ]);
  });

  const refused: [string, ObservedRules][] = [
    ['a tunnel name with a quote', { tunnel: 'mesh" accept', peerFilter: { local: '10.0.0.1', allowed: [] } }],
    ['a tunnel name with a statement', { tunnel: 'x;flush ruleset', masquerade: { link: 'l', sources: [] } }],
    ['an upper-case tunnel name', { tunnel: 'Mesh', peerFilter: { local: '10.0.0.1', allowed: [] } }],
    ['a tunnel name of 64', { tunnel: 'a'.repeat(64), peerFilter: { local: '10.0.0.1', allowed: [] } }],
    ['NO_TUNNEL', { tunnel: NO_TUNNEL, peerFilter: { local: '10.0.0.1', allowed: [] } }],
    ['a link name with a quote', { tunnel: 't', masquerade: { link: 'eth0" accept #', sources: [] } }],
    ['a link name of 16', { tunnel: 't', masquerade: { link: 'abcdefghijklmnop', sources: [] } }],
    ['a link name with a glob', { tunnel: 't', masquerade: { link: 'eth*', sources: [] } }],
    ['a link name starting with -', { tunnel: 't', masquerade: { link: '-eth0', sources: [] } }],
    [
      'an address with a brace',
      { tunnel: 't', peerFilter: { local: '10.0.0.1', allowed: ['10.0.0.2 } ; flush ruleset'] } },
    ],
    ['a prefix as the local address', { tunnel: 't', peerFilter: { local: '10.0.0.1/32', allowed: [] } }],
    ['a name as an address', { tunnel: 't', peerFilter: { local: 'localhost', allowed: [] } }],
    ['a source without a length', { tunnel: 't', masquerade: { link: 'l', sources: ['10.0.0.0'] } }],
    ['a source with host bits', { tunnel: 't', masquerade: { link: 'l', sources: ['10.0.0.1/24'] } }],
    ['a source that is a range', { tunnel: 't', masquerade: { link: 'l', sources: ['10.0.0.1-10.0.0.9'] } }],
    [
      'a negative counter',
      { tunnel: 't', peerFilter: { local: '10.0.0.1', allowed: [] }, dropped: { packets: -1, bytes: 0 } },
    ],
    [
      'a fractional counter',
      { tunnel: 't', masquerade: { link: 'l', sources: [] }, masqueraded: { packets: 1, bytes: 0.5 } },
    ],
    [
      'a counter over 2^64',
      { tunnel: 't', peerFilter: { local: '10.0.0.1', allowed: [] }, dropped: { packets: 2 ** 65, bytes: 0 } },
    ],
  ];
  for (const [what, rules] of refused) {
    test(`refuses ${what}`, () => {
      assert.throws(() => nftScript([TABLE[0]!, rules]), /^Error: refusing to pass .* to nft: not a /);
    });
  }
});

describe('parseNftTable of nft -j -p list table ip ipip-operator (6.12)', () => {
  test('reads back exactly what was rendered, counters included; rendering that again gives the same text', () => {
    const parsed = parseNftTable(captured('table'));
    assert.deepEqual(parsed, TABLE_READ);
    assert.deepEqual(nftScript(parsed), nftScript(TABLE));
  });

  test('63-character names and empty sets round-trip', () => {
    assert.deepEqual(parseNftTable(captured('long-names')), [{ ...LONG_TABLE[0]!, dropped: ZERO, masqueraded: ZERO }]);
  });

  test('a hand `nft flush table` (sets and chains left, rules gone): every field absent, and the leftovers make a NO_TUNNEL part', () => {
    assert.deepEqual(parseNftTable(captured('flushed')), [
      { tunnel: NO_TUNNEL },
      { tunnel: 'edge' },
      { tunnel: 'mesh' },
      { tunnel: 'solo' },
    ]);
  });

  test("one rule deleted by hand: that tunnel's filter is absent, the others are intact", () => {
    assert.deepEqual(parseNftTable(captured('solo-rule-deleted')), [
      { tunnel: NO_TUNNEL },
      TABLE[0],
      TABLE[1],
      { tunnel: 'solo' },
    ]);
  });

  test('a chain and a rule added by hand: the tunnels are read as they are, and a NO_TUNNEL part asks for the rewrite', () => {
    assert.deepEqual(parseNftTable(captured('strays')), [
      { tunnel: NO_TUNNEL },
      TABLE[0],
      TABLE[1],
      { tunnel: 'solo' },
    ]);
  });

  test('a second copy of a rule: that filter is absent (its counter too), the masquerade is intact', () => {
    const mesh = parseNftTable(captured('duplicate-rule')).find((r) => r.tunnel === 'mesh');
    assert.deepEqual(mesh, { tunnel: 'mesh', masquerade: TABLE[1]!.masquerade, masqueraded: TABLE[1]!.masqueraded });
  });

  test('a table with no tunnel objects at all is one NO_TUNNEL part, so the planner removes it', () => {
    assert.deepEqual(parseNftTable(captured('empty-table')), [{ tunnel: NO_TUNNEL }]);
  });

  test('a set named like ours with no rule: the tunnel without fields, and NO_TUNNEL for the set', () => {
    assert.deepEqual(parseNftTable(captured('set-without-rule')), [{ tunnel: NO_TUNNEL }, { tunnel: 'x' }]);
  });

  /** The captured table, changed by `edit`. */
  const tampered = (edit: (objects: Record<string, Record<string, any>>[]) => void) => {
    const objects = structuredClone(captured('table')) as Record<string, Record<string, any>>[];
    edit(objects);
    return parseNftTable(objects);
  };
  const set = (objects: Record<string, Record<string, any>>[], name: string) =>
    objects.find((o) => o.set?.name === name)!.set!;

  test('a base chain of the wrong priority: no rule in it is recognised', () => {
    const parsed = tampered((objects) => {
      objects.find((o) => o.chain?.name === 'prerouting')!.chain!.prio = 0;
    });
    assert.deepEqual(parsed[0], { tunnel: NO_TUNNEL });
    assert.equal(parsed.find((r) => r.tunnel === 'mesh')?.peerFilter, undefined);
    assert.deepEqual(parsed.find((r) => r.tunnel === 'mesh')?.masquerade, TABLE[1]!.masquerade);
  });

  test('a set of another form (a range element, a timeout, flags): that field absent', () => {
    const range = tampered((objects) => set(objects, 'masq-edge').elem.push({ range: ['10.50.0.1', '10.50.0.9'] }));
    assert.deepEqual(
      range.find((r) => r.tunnel === 'edge'),
      { tunnel: 'edge', masqueraded: TABLE[0]!.masqueraded },
    );
    const timeout = tampered((objects) => {
      set(objects, 'peers-solo').timeout = 60;
    });
    assert.deepEqual(
      timeout.find((r) => r.tunnel === 'solo'),
      { tunnel: 'solo', dropped: ZERO },
    );
    const flags = tampered((objects) => {
      set(objects, 'peers-solo').flags = ['interval'];
    });
    assert.deepEqual(
      flags.find((r) => r.tunnel === 'solo'),
      { tunnel: 'solo', dropped: ZERO },
    );
  });

  test('a dormant table is not what render writes', () => {
    const parsed = tampered((objects) => {
      objects.find((o) => o.table !== undefined)!.table!.flags = ['dormant'];
    });
    assert.deepEqual(parsed, [{ tunnel: NO_TUNNEL }, ...TABLE_READ]);
  });

  test('protocol 4 by name (nft without -p) is read the same', () => {
    const parsed = tampered((objects) => {
      for (const o of objects) if (o.rule?.chain === 'prerouting') o.rule.expr[0].match.right = 'ipencap';
    });
    assert.deepEqual(parsed, TABLE_READ);
  });

  test('a plain address in an interval set reads as /32; sources sorted by address then length', () => {
    const parsed = tampered((objects) => {
      const elem = set(objects, 'masq-mesh').elem as unknown[];
      elem.reverse();
    });
    assert.deepEqual(parsed.find((r) => r.tunnel === 'mesh')?.masquerade?.sources, [
      '10.30.0.0/24',
      '172.0.1.2/32',
      '172.0.1.3/32',
    ]);
  });
});

describe('nft monitor: transactions on our table by others concern us, our own writes and other tables do not', () => {
  // `nft monitor` on UML 6.12 (nftables 1.0.6): a write of ours (process 125), a hand
  // flush (126), a change of another table (127), the table deleted by hand (128).
  const lines = [
    'delete table ip ipip-operator',
    'add table ip ipip-operator { comment "managed by ipip-operator; every change replaces the whole table" }',
    'add set ip ipip-operator peers-mesh { type ipv4_addr; }',
    'add element ip ipip-operator peers-mesh { 192.168.40.3 }',
    'add chain ip ipip-operator prerouting { type filter hook prerouting priority raw; policy accept; }',
    'add rule ip ipip-operator prerouting ip protocol ipencap ip daddr 192.168.40.2 ip saddr != @peers-mesh counter packets 0 bytes 0 drop comment "mesh"',
    '# new generation 2 by process 125 (nft)',
    'delete rule ip ipip-operator prerouting handle 4',
    '# new generation 3 by process 126 (nft)',
    'add element inet foreign blocked { 203.0.113.20 }',
    '# new generation 4 by process 127 (nft)',
    'delete chain ip ipip-operator prerouting',
    'delete table ip ipip-operator',
    '# new generation 5 by process 128 (nft)',
  ];

  test('one report per transaction: ours by pid, a hand flush and a hand delete as drift, another table as not ours', () => {
    const reports: Array<[boolean, boolean]> = [];
    const own = new Set([125]);
    const transactions = new NftTransactions(
      (pid) => own.has(pid),
      (touched, isOwn) => reports.push([touched, isOwn]),
    );
    for (const line of lines) transactions.line(line);
    assert.deepEqual(reports, [
      [true, true],
      [true, false],
      [false, false],
      [true, false],
    ]);
  });

  test('lines: objects of our table, of other tables (an inet table of the same name too), generations', () => {
    assert.deepEqual(parseNftMonitorLine('add rule ip ipip-operator postrouting ip saddr @masq-edge masquerade'), {
      kind: 'object',
      ours: true,
    });
    assert.deepEqual(parseNftMonitorLine('add table inet ipip-operator'), { kind: 'object', ours: false });
    assert.deepEqual(parseNftMonitorLine('delete table ip ipip-operator-2'), { kind: 'object', ours: false });
    assert.deepEqual(parseNftMonitorLine('# new generation 12 by process 4567 (nft)'), {
      kind: 'generation',
      pid: 4567,
    });
    assert.deepEqual(parseNftMonitorLine('# new generation 12'), { kind: 'generation', pid: undefined });
    assert.equal(parseNftMonitorLine(''), undefined);
  });

  test('a line that is not an event counts as ours (the safe side), and a transaction without a pid is not our own', () => {
    assert.deepEqual(parseNftMonitorLine('Error: something nft had to say'), { kind: 'object', ours: true });
    const reports: Array<[boolean, boolean]> = [];
    const transactions = new NftTransactions(
      () => true,
      (touched, isOwn) => reports.push([touched, isOwn]),
    );
    transactions.line('delete rule ip ipip-operator prerouting handle 4');
    transactions.line('# new generation 3');
    assert.deepEqual(reports, [[true, false]]);
  });
});

describe("the kept reader's answer: `nft -j -p -i` lines, the table's presence said on stdout", () => {
  // As nft 1.0.6 prints them (seen here, a table ip x made by hand and ours).
  const meta = '{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}';
  const ours = '{"table": {"family": "ip", "name": "ipip-operator", "handle": 7}}';
  const other = '{"table": {"family": "ip", "name": "x", "handle": 1}}';
  const set =
    '{"set": {"family": "ip", "name": "peers-mesh", "table": "ipip-operator", "type": "ipv4_addr", "handle": 2}}';
  const line = (...objects: string[]) => `{"nftables": [${[meta, ...objects].join(', ')}]}`;
  const names = (...tables: string[]) => line(...tables);
  const listing = line(ours, set);
  const end = line();
  /** The reader's check on these lines, as one answer's lines so far. */
  const keptReadComplete = (lines: string[]) => new KeptAnswer().complete(lines);
  /** What these lines, as a whole answer, say. */
  const keptAnswer = (lines: string[]) => {
    const answer = new KeptAnswer();
    answer.complete(lines);
    return answer.result();
  };
  const objectsOf = (text: string) => ({ objects: (JSON.parse(text) as { nftables: unknown[] }).nftables });

  test('the request: the names of the family, the table, an end that never names it', () => {
    assert.deepEqual(KEPT_READ, ['list tables ip', 'list table ip ipip-operator', 'list tables arp']);
  });

  test('complete after the first line at a line without our table; the listing, or our name alone, does not end it', () => {
    assert.equal(keptReadComplete([names(other, ours)]), false, 'one line is never the end');
    assert.equal(keptReadComplete([names(other, ours), listing]), false);
    assert.equal(keptReadComplete([names(other, ours), listing, end]), true);
    assert.equal(keptReadComplete([names(other), end]), true);
    // An empty table of ours is listed as its names are: still ours, so not the end.
    assert.equal(keptReadComplete([names(ours), line(ours)]), false);
    // As the reader asks, once per line with the lines so far: the same checks, the same answer.
    const answer = new KeptAnswer();
    const lines = [names(other, ours), listing, end];
    assert.deepEqual(
      lines.map((_, i) => answer.complete(lines.slice(0, i + 1))),
      [false, false, true],
    );
    assert.deepEqual(answer.result(), objectsOf(listing));
  });

  test('the table when its listing came between, absent when the names did not hold it, else no answer', () => {
    assert.deepEqual(keptAnswer([names(other, ours), listing, end]), objectsOf(listing));
    assert.deepEqual(keptAnswer([names(ours), line(ours), end]), objectsOf(line(ours)));
    assert.equal(keptAnswer([names(other), end]), 'absent');
    assert.equal(keptAnswer([names(), end]), 'absent');
    // Made by someone between the two commands: listed, so read.
    assert.deepEqual(keptAnswer([names(other), listing, end]), objectsOf(listing));
    // Named, then not listed (deleted between them, or an error): not for sure, read by a process.
    assert.equal(keptAnswer([names(ours), end]), undefined);
    assert.equal(keptAnswer(['not json', end]), undefined);
  });
});

describe('the nft driver without nft', () => {
  test('observe: unavailable, saying nft is not installed; apply runs nothing and charges every action', async () => {
    const commands: string[] = [];
    const driver = new NftDriver({
      nftPath: '/nonexistent/nft',
      onCommand: (tool, purpose, _seconds, ok) => commands.push(`${tool} ${purpose} ${ok}`),
    });
    const state = (await driver.observe())!;
    assert.equal(state.available, false);
    assert.match(state.available ? '' : state.why, /^nft is not installed .*apt-get install nftables/);
    // The probe ran once; a second observe within REPROBE_MS asks nothing.
    assert.deepEqual(commands, ['nft observe false']);
    assert.deepEqual(await driver.observe(), state);
    const action: NftAction = {
      tool: 'nft',
      kind: 'rules',
      verb: 'create',
      tunnel: 'solo',
      link: '',
      detail: '',
      rules: TABLE[2],
      table: [TABLE[2]!],
    };
    const results = await driver.apply([action, { ...action, tunnel: 'edge' }]);
    assert.deepEqual(
      results.map((r) => r.error),
      [state.available ? '' : state.why, state.available ? '' : state.why],
    );
    assert.deepEqual(commands, ['nft observe false']);
  });

  test('a node whose tunnels want no rules asks nft one thing: whether a table of ours was left', async () => {
    // A stand-in nft that notes its arguments and answers as nft does for a missing table.
    const dir = mkdtempSync(join(tmpdir(), 'ipip-nft-'));
    after(() => rmSync(dir, { recursive: true, force: true }));
    const calls = join(dir, 'calls');
    const nft = join(dir, 'nft');
    writeFileSync(
      nft,
      `#!/bin/sh\necho "$*" >> ${calls}\necho 'Error: No such file or directory; did you mean table "x" in family ip?' >&2\nexit 1\n`,
    );
    chmodSync(nft, 0o755);
    const driver = new NftDriver({ nftPath: nft });
    assert.deepEqual(await driver.observe({ rules: false }), { available: true, table: false, rules: [] });
    // No check-mode probe of the kernel (nft -c): the table's read answers for itself.
    assert.deepEqual(readFileSync(calls, 'utf8').trim().split('\n'), ['-j -p list table ip ipip-operator']);
    // And with no table, the next pass asks nothing.
    assert.equal(await driver.observe({ rules: false }), undefined);
    assert.equal(readFileSync(calls, 'utf8').trim().split('\n').length, 1);
  });

  test('the monitor of a missing nft says so, and is not left running', async () => {
    const commands: string[] = [];
    const events: KernelEvent[] = [];
    let stop = () => {};
    const error = await new Promise<string>((resolve) => {
      const driver = new NftDriver({
        nftPath: '/nonexistent/nft',
        onCommand: (tool, purpose, _seconds, ok) => commands.push(`${tool} ${purpose} ${ok}`),
        onMonitorError: resolve,
      });
      stop = driver.watch(
        (event) => events.push(event),
        () => ({ links: new Set(), prefixes: new Set() }),
      );
    });
    // Stopped before its restart (1 s later, on an unref'd timer): nothing is left running.
    stop();
    assert.match(error, /^nft monitor exited \(ENOENT\)/);
    // No event came from it; its death says that the agent's view of the table is stale.
    assert.deepEqual(events, [{ concernsUs: true, change: { kind: 'unreadable' } }]);
    assert.deepEqual(commands, ['nft monitor false']);
  });

  test("nft's errors, short: the first Error line without the file position and a count of the others, or the first line", () => {
    const debian = [
      '/tmp/ipip-operator-nft-1:1:1-23: Error: Could not process rule: Operation not supported',
      'table ip ipip-operator',
      '^^^^^^^^^^^^^^^^^^^^^^^',
      '/tmp/ipip-operator-nft-1:3:1-2: Error: Could not process rule: Operation not supported',
      'table ip ipip-operator {',
      '^^',
      '/tmp/ipip-operator-nft-1:5:6-17: Error: Could not process rule: No such file or directory',
    ].join('\n');
    assert.equal(nftError(debian), 'Could not process rule: Operation not supported (and 2 more errors)');
    assert.equal(
      nftError('mnl.c:60: Unable to initialize Netlink socket: Protocol not supported\n'),
      'mnl.c:60: Unable to initialize Netlink socket: Protocol not supported',
    );
    assert.equal(nftError(''), 'failed');
  });
});
