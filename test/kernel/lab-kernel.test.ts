// The project's own User-Mode Linux kernel (scripts/uml-kernel.sh, Linux 6.12) booted as
// a guest: what the nftables work of issue 12 needs and Debian's linux.uml 6.1 lacks.
// Every option is built in, so nothing is insmod'ed; nft is the machine's (hostfs root).

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { labKernel } from '../harness/lab-kernel.ts';
import { REPO } from '../harness/repo.ts';
import { Guest, requireCommands } from '../harness/uml.ts';

let guest: Guest;

/** `nft -j list ...` output: an array of one-key objects ({ table }, { set }, { chain }, { rule }). */
type NftObject = Record<string, Record<string, any>>;

async function nftJson(what: string, flags = ''): Promise<NftObject[]> {
  return (JSON.parse(await guest.ok(`nft -j ${flags} list ${what}`)) as { nftables: NftObject[] }).nftables;
}

function ofKind(objects: NftObject[], kind: string): Record<string, any>[] {
  return objects.flatMap((o) => (o[kind] === undefined ? [] : [o[kind]]));
}

/** The table of issue 12 in small: IPIP only from peers, masquerade toward a far LAN. */
const TABLE = `table ip x {
  set peers {
    type ipv4_addr
    elements = { 192.168.40.2, 192.168.40.3 }
  }
  chain input {
    type filter hook input priority filter; policy accept;
    ip protocol 4 ip saddr != @peers counter drop comment "ipip from non-peers"
  }
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr 172.0.1.0/24 oifname != "ipipmesh" counter masquerade comment "peers to the far LAN"
  }
}
`;

describe('the lab kernel (scripts/uml-kernel.sh) in a guest', { timeout: 60 * 60_000 }, () => {
  before(async () => {
    requireCommands(['nft'], 'apt-get install -y nftables (or run scripts/setup.sh)');
    // A cold build takes minutes (about 11 on 2 cores); cached, it answers at once.
    guest = await Guest.boot({ kernel: await labKernel() });
  });
  after(async () => {
    await guest?.stop();
  });

  test('is Linux 6.12 with everything built in: no modules dir, nothing insmod-ed', async () => {
    const release = (await guest.ok('uname -r')).trim();
    assert.match(release, /^6\.12\./);
    assert.equal((await guest.sh(`test -e /usr/lib/uml/modules/${release}`)).code, 1);
    assert.equal((await guest.ok('cat /proc/modules 2>/dev/null || true')).trim(), '');
  });

  test("guest processes keep their floating-point state across switches, on this host's XSAVE size (uml-kernel.patch)", async () => {
    // Four processes at once summing a harmonic series: the guest's kernel switches between
    // them, saving and restoring each one's state through ptrace. Without the patch, on a
    // host with AMX, the first restore failed and init was killed at boot; a state cut
    // short would show here as a wrong sum or a crashed process.
    const sum = 'awk \'BEGIN { s = 0; for (i = 1; i <= 300000; i++) s += 1 / i; printf "%.12f\\n", s }\'';
    const expected = execFileSync('sh', ['-c', sum], { encoding: 'utf8' }).trim();
    const sums = (await guest.ok(`for n in 1 2 3 4; do ${sum} & done; wait`)).trim().split('\n');
    assert.deepEqual(sums, [expected, expected, expected, expected]);
  });

  test('ipip, gre and sit links (and veth) can be created', async () => {
    await guest.ok(
      [
        'ip link add t-ipip type ipip local 10.1.0.1 remote 10.1.0.2',
        'ip link add t-gre type gre local 10.1.0.1 remote 10.1.0.3',
        'ip link add t-sit type sit local 10.1.0.1 remote 10.1.0.4',
        'ip link add t-veth type veth peer name t-veth-peer',
      ].join(' && '),
    );
    const links = JSON.parse(await guest.ok('ip -d -j link show')) as {
      ifname: string;
      linkinfo?: { info_kind: string; info_data?: { local?: string; remote?: string } };
    }[];
    const kinds = Object.fromEntries(links.map((l) => [l.ifname, l.linkinfo?.info_kind]));
    assert.equal(kinds['t-ipip'], 'ipip');
    assert.equal(kinds['t-gre'], 'gre');
    assert.equal(kinds['t-sit'], 'sit');
    assert.equal(kinds['t-veth'], 'veth');
    const ipip = links.find((l) => l.ifname === 't-ipip')!;
    assert.deepEqual([ipip.linkinfo?.info_data?.local, ipip.linkinfo?.info_data?.remote], ['10.1.0.1', '10.1.0.2']);
    await guest.ok('ip link del t-ipip && ip link del t-gre && ip link del t-sit && ip link del t-veth');
  });

  test('nft add table ip x', async () => {
    await guest.ok('nft add table ip x');
    assert.deepEqual(
      ofKind(await nftJson('tables'), 'table').map((t) => [t.family, t.name]),
      [['ip', 'x']],
    );
  });

  test('a set, an input chain dropping IPIP from non-peers, a nat postrouting masquerade: one nft -f -, read back by nft -j', async () => {
    await guest.writeFile('/run/x.nft', TABLE);
    await guest.ok('nft -f - < /run/x.nft');
    const objects = await nftJson('table ip x');

    const [peers, ...otherSets] = ofKind(objects, 'set');
    assert.deepEqual(otherSets, []);
    assert.deepEqual([peers?.name, peers?.type, peers?.elem], ['peers', 'ipv4_addr', ['192.168.40.2', '192.168.40.3']]);

    const chains = ofKind(objects, 'chain').map((c) => [c.name, c.type, c.hook, c.prio, c.policy]);
    assert.deepEqual(chains, [
      ['input', 'filter', 'input', 0, 'accept'],
      ['postrouting', 'nat', 'postrouting', 100, 'accept'],
    ]);

    const rules = ofKind(objects, 'rule');
    assert.deepEqual(
      rules.map((r) => [r.chain, r.comment]),
      [
        ['input', 'ipip from non-peers'],
        ['postrouting', 'peers to the far LAN'],
      ],
    );
    const [drop, masquerade] = rules.map((r) => r.expr as Record<string, any>[]);
    // nft names protocol 4 after /etc/protocols ("ipencap"), or prints 4 with -p.
    assert.deepEqual(drop, [
      { match: { op: '==', left: { payload: { protocol: 'ip', field: 'protocol' } }, right: 'ipencap' } },
      { match: { op: '!=', left: { payload: { protocol: 'ip', field: 'saddr' } }, right: '@peers' } },
      { counter: { packets: 0, bytes: 0 } },
      { drop: null },
    ]);
    assert.deepEqual(masquerade?.[0], {
      match: {
        op: '==',
        left: { payload: { protocol: 'ip', field: 'saddr' } },
        right: { prefix: { addr: '172.0.1.0', len: 24 } },
      },
    });
    assert.deepEqual(masquerade?.[1], { match: { op: '!=', left: { meta: { key: 'oifname' } }, right: 'ipipmesh' } });
    assert.deepEqual(masquerade?.at(-1), { masquerade: null });
    const numeric = ofKind(await nftJson('table ip x', '-p'), 'rule')[0]?.expr as Record<string, any>[];
    assert.equal(numeric[0]?.match.right, 4);
    await guest.ok('nft delete table ip x');
    assert.deepEqual(ofKind(await nftJson('tables'), 'table'), []);
  });

  test('the inet family works', async () => {
    await guest.ok(
      `nft add table inet y && nft add chain inet y input '{ type filter hook input priority 0; policy accept; }' && ` +
        `nft add rule inet y input meta l4proto ipv6-icmp counter accept`,
    );
    const objects = await nftJson('table inet y');
    assert.deepEqual(
      ofKind(objects, 'chain').map((c) => [c.family, c.name, c.hook]),
      [['inet', 'input', 'input']],
    );
    assert.equal(ofKind(objects, 'rule').length, 1);
    await guest.ok('nft delete table inet y');
  });

  test('io_uring is not there: no io_uring_disabled sysctl, io_uring_setup answers ENOSYS', async () => {
    assert.equal((await guest.sh('test -e /proc/sys/kernel/io_uring_disabled')).code, 1);
    // io_uring_setup is syscall 425 on x86_64; ENOSYS is 38. (The sysctl alone proves nothing: it
    // came in 6.6. On Debian's linux.uml 6.1 it is missing too, and io_uring_setup returns an fd.)
    const errno = await guest.ok(`perl -e 'my $p = "\\0" x 120; syscall(425, 1, $p); print 0 + $!'`);
    assert.equal(errno.trim(), '38');
  });

  test('the pinned node runs in the guest', async () => {
    const pinned = join(REPO, 'node_modules/.bin/node');
    const want = execFileSync(pinned, ['--version'], { encoding: 'utf8' }).trim();
    const out = await guest.ok(
      `${pinned} -e "const fs = require('node:fs'); ` +
        `fs.promises.readFile('/proc/version', 'utf8').then((v) => console.log(process.version, v.split(' ')[2]))"`,
    );
    const [version, release] = out.trim().split(' ');
    assert.equal(version, want);
    assert.match(release ?? '', /^6\.12\./);
  });
});
