// Runs inside a UML guest, in host-a's namespace (test/kernel/ip-reader.test.ts starts it):
// the ip driver's reader and monitor against the real `ip` and kernel, step by step. After
// each change, what the reader's read says next to what a new `ip` process says, and the
// reader processes there are; then the device the monitor names for a route added before
// and after its link is renamed. Prints one JSON line: { step: { reader, fresh, readers,
// error? }, ..., monitor: { ... } }.

import { execa } from 'execa';
import { IP_READ_ARGS, IP_READ_COMMANDS, IpDriver } from '../../src/dataplane/ip/driver.ts';
import { parseObserveOutput } from '../../src/dataplane/ip/parse.ts';
import type { KernelChange, KernelState } from '../../src/model/kernel.ts';
import { IP_READER_PATTERN, ipReaderPids } from './probes.ts';
import { eventually } from './support.ts';

const ended: boolean[] = [];
const driver = new IpDriver({
  timeoutMs: 2000,
  onCommand: (_tool, purpose, _seconds, ok) => {
    if (purpose === 'reader') ended.push(ok);
  },
});

/** Links by name with their index, and the main table's routes of the 10.77/16 test prefixes with their device. */
function summary(state: KernelState) {
  return {
    links: state.links.map((l) => `${l.name}#${l.index}`).sort(),
    routes: state.routes
      .filter((r) => r.dst.startsWith('10.77.'))
      .map((r) => `${r.dst} dev ${r.dev}`)
      .sort(),
  };
}

/** What a new `ip` process reads: the reader's own arguments and commands. */
async function fresh() {
  const r = await execa('ip', IP_READ_ARGS, { input: `${IP_READ_COMMANDS.join('\n')}\n` });
  return summary(parseObserveOutput(r.stdout));
}

const sh = (command: string) => execa('sh', ['-c', command]);

async function step(change?: () => Promise<unknown>) {
  const before = await ipReaderPids();
  try {
    await change?.();
  } catch (error) {
    return { changeFailed: (error as Error).message, before, readers: await ipReaderPids() };
  }
  try {
    const reader = summary(await driver.observe());
    return { reader, fresh: await fresh(), readers: await ipReaderPids() };
  } catch (error) {
    return { error: (error as Error).message, readers: await ipReaderPids() };
  }
}

const result: Record<string, unknown> = {};
result.first = await step(() =>
  sh(
    'ip link add rd0 type ipip local 192.168.40.2 remote 10.9.9.9 dev eth1 && ip link set rd0 up && ' +
      'ip route add 10.77.0.0/24 dev rd0',
  ),
);
// Renamed: iproute2 names devices from a cache by index, which a read must refresh.
result.renamed = await step(() =>
  sh('ip link set rd0 down && ip link set rd0 name rd1 && ip link set rd1 up && ip route add 10.77.0.0/24 dev rd1'),
);
// Gone, and its name back on a new device (a new index).
result.recreated = await step(() =>
  sh(
    'ip link del rd1 && ip link add rd0 type ipip local 192.168.40.2 remote 10.9.9.8 dev eth1 && ' +
      'ip link set rd0 up && ip route add 10.77.1.0/24 dev rd0',
  ),
);
// The reader killed between reads: the next read starts another.
result.killed = await step(() => sh(`pkill -KILL -f '${IP_READER_PATTERN}'`));
// The reader stopped (it never answers): that read fails in its time, the next one gets another process.
result.stopped = await step(() => sh(`pkill -STOP -f '${IP_READER_PATTERN}'`));
result.afterStopped = await step();
result.readerEnds = ended;
await sh('ip link del rd0');

// The monitor: the device of a route added on mon0, then on the same link renamed mon1.
const changes: KernelChange[] = [];
const stopWatch = driver.watch(
  (event) => changes.push(event.change),
  () => ({ links: new Set(), prefixes: new Set() }),
);
const monitorPids = async () =>
  (await execa('pgrep', ['-f', '--', '^ip -d -N -o monitor label link address route$'], { reject: false })).stdout;
const routeDev = (dst: string) =>
  eventually(`the monitor's event for ${dst}`, async () => {
    const change = changes.find((c) => c.kind === 'route' && c.route.dst === dst && !c.deleted);
    return change?.kind === 'route' ? (change.route.dev ?? 'none') : undefined;
  });
const firstMonitor = await eventually('the monitor to run', async () => (await monitorPids()) || undefined);
// A monitor subscribes some time after its start: a change of mon9 whose line comes shows it listens.
await sh('ip link add mon9 type ipip local 192.168.40.2 remote 10.9.9.6 dev eth1');
const listening = (what: string) =>
  eventually(what, async () => {
    await sh('ip link set mon9 mtu 1400 && ip link set mon9 mtu 1500');
    return changes.some((c) => c.kind === 'link' && c.link.name === 'mon9');
  });
await listening('the monitor to listen');
await sh(
  'ip link add mon0 type ipip local 192.168.40.2 remote 10.9.9.7 dev eth1 && ip link set mon0 up && ' +
    'ip route add 10.77.8.0/24 dev mon0',
);
const devBefore = await routeDev('10.77.8.0/24');
await sh('ip link set mon0 down && ip link set mon0 name mon1 && ip link set mon1 up');
const secondMonitor = await eventually('a new monitor', async () => {
  const pids = await monitorPids();
  return pids !== '' && pids !== firstMonitor ? pids : undefined;
});
const unreadable = changes.filter((c) => c.kind === 'unreadable').length;
changes.length = 0;
await listening('the new monitor to listen');
await sh('ip route add 10.77.9.0/24 dev mon1');
const devAfter = await routeDev('10.77.9.0/24');
stopWatch();
await sh('ip link del mon1; ip link del mon9');
result.monitor = { devBefore, devAfter, unreadable, monitors: [firstMonitor, secondMonitor] };
driver.stop();
process.stdout.write(`${JSON.stringify(result)}\n`);
