// The cluster lab harness (test/harness/cluster-lab.ts) on its real parts: guests that are
// real kernels on a bridge, a real kube-apiserver on that bridge, RBAC enforced, and
// nothing left behind. The agent tests build on exactly this, so it is proven on its own.
// Needs the lab kernel (scripts/uml-kernel.sh) and the binaries of scripts/cluster-tools.sh;
// FAILS (never skips) with an install hint without them.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readlinkSync, realpathSync } from 'node:fs';
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  BRIDGE_ADDRESS,
  LAB_NODES,
  startClusterLab,
  type ClusterLab,
  type LabNodeName,
} from '../harness/cluster-lab.ts';
import { kubectlOk } from '../harness/apiserver.ts';
import { eventually, StartedByTest } from '../harness/support.ts';

const NODES = Object.keys(LAB_NODES) as LabNodeName[];
/** Processes in a guest answer within seconds. */
const quick = { timeoutMs: 10_000, intervalMs: 200 };

interface NodeJson {
  metadata: { name: string };
  status?: { addresses?: { type: string; address: string }[] };
}

describe('cluster lab: guests on a bridge with a real API server', { timeout: 600_000 }, () => {
  const lab = new StartedByTest<ClusterLab>('lab');
  const L = (): ClusterLab => lab.get();

  after(async () => {
    await lab.started?.stop();
  });

  const kubectl = (args: string[], input?: string): Promise<string> => kubectlOk(L().api, args, input);

  async function internalIPs(): Promise<Record<string, string | undefined>> {
    const list = JSON.parse(await kubectl(['get', 'nodes', '-o', 'json'])) as { items: NodeJson[] };
    return Object.fromEntries(
      list.items.map((n) => [n.metadata.name, n.status?.addresses?.find((a) => a.type === 'InternalIP')?.address]),
    );
  }

  test('the lab starts: namespace, bridge, API server with the CRD, a guest per node', async (t) => {
    const started = Date.now();
    const up = await lab.start(() => startClusterLab());
    t.diagnostic(`lab started in ${Date.now() - started} ms (netns ${up.netns}, API server ${up.api.server})`);
    assert.equal(up.api.netns, up.netns);
    assert.equal(up.api.server.startsWith(`https://${BRIDGE_ADDRESS}:`), true, up.api.server);
    assert.deepEqual(up.nodes, LAB_NODES);
    const crd = await kubectl(['get', 'crd', 'ipiptunnels.tunnel.ipip-operator.dev', '-o', 'name']);
    assert.equal(crd.trim(), 'customresourcedefinition.apiextensions.k8s.io/ipiptunnels.tunnel.ipip-operator.dev');
  });

  test('the lab is in its own namespace only: the machine has no bridge or address of it', () => {
    const host = spawnSync('ip', ['-o', 'addr', 'show'], { encoding: 'utf8' }).stdout;
    assert.doesNotMatch(host, /192\.168\.40\./, "no lab address in the machine's own namespace");
    const inLab = spawnSync('ip', ['-n', L().netns, '-o', 'addr', 'show', 'dev', 'br0'], { encoding: 'utf8' }).stdout;
    assert.match(inLab, new RegExp(`inet ${BRIDGE_ADDRESS.replace(/\./g, '\\.')}/24`));
  });

  test('kubectl get nodes from the host side lists every node with its InternalIP and Hostname', async () => {
    assert.deepEqual(await internalIPs(), LAB_NODES);
    const b = JSON.parse(await kubectl(['get', 'node', 'node-b', '-o', 'json'])) as NodeJson;
    assert.deepEqual(b.status?.addresses, [
      { type: 'InternalIP', address: '192.168.40.3' },
      { type: 'Hostname', address: 'node-b' },
    ]);
  });

  test('each guest has eth1 with its address (vec0 renamed) and its hostname', async () => {
    for (const node of NODES) {
      const g = L().guest(node);
      const addr = JSON.parse(await g.ok('ip -j addr show dev eth1')) as {
        addr_info: { family: string; local: string; prefixlen: number }[];
      }[];
      assert.deepEqual(
        addr[0]!.addr_info.filter((a) => a.family === 'inet').map((a) => `${a.local}/${a.prefixlen}`),
        [`${LAB_NODES[node]}/24`],
      );
      assert.notEqual((await g.sh('ip link show dev vec0')).code, 0, 'vec0 is gone: renamed');
      assert.equal((await g.ok('hostname')).trim(), node);
    }
  });

  test('the guests ping each other and the bridge over the lab network', async () => {
    assert.equal((await L().guest('node-a').sh(`ping -c 2 -W 2 ${LAB_NODES['node-b']}`)).code, 0);
    assert.equal((await L().guest('node-b').sh(`ping -c 2 -W 2 ${LAB_NODES['node-a']}`)).code, 0);
    assert.equal((await L().guest('node-a').sh(`ping -c 1 -W 2 ${BRIDGE_ADDRESS}`)).code, 0);
    // Guards the two above: an address nobody has does not answer.
    assert.notEqual((await L().guest('node-a').sh('ping -c 1 -W 1 192.168.40.99')).code, 0);
  });

  test('from inside each guest, kubectl with the admin kubeconfig reaches the API server over the bridge', async () => {
    const kubeconfig = L().adminKubeconfigForGuests();
    assert.equal(kubeconfig.startsWith('/var/tmp/'), true, `guests see /var/tmp, not /tmp: ${kubeconfig}`);
    for (const node of NODES) {
      const out = await L().guest(node).ok(`kubectl --kubeconfig ${kubeconfig} get nodes -o name`);
      assert.deepEqual(out.trim().split('\n').sort(), ['node/node-a', 'node/node-b']);
    }
  });

  test('a ServiceAccount token authenticates, and RBAC denies what it was not granted until it is', async () => {
    await L().ensureServiceAccount('lab-test', 'nobody');
    await L().ensureServiceAccount('lab-test', 'nobody'); // again: idempotent
    const kubeconfig = await L().serviceAccountKubeconfig('lab-test', 'nobody');
    const g = L().guest('node-a');
    const who = await g.ok(`kubectl --kubeconfig ${kubeconfig} auth whoami -o jsonpath='{.status.userInfo.username}'`);
    assert.equal(who, 'system:serviceaccount:lab-test:nobody', 'the token is the ServiceAccount, not anonymous');
    const canI = await g.sh(`kubectl --kubeconfig ${kubeconfig} auth can-i list nodes`);
    assert.equal(canI.stdout.trim(), 'no');
    const list = await g.sh(`kubectl --kubeconfig ${kubeconfig} get nodes -o name`);
    assert.notEqual(list.code, 0);
    assert.match(list.stderr, /forbidden/i);

    // Guards the "no": with a binding, the same token may.
    await kubectl(['create', 'clusterrole', 'lab-test-node-reader', '--verb=list,get', '--resource=nodes']);
    await kubectl([
      'create',
      'clusterrolebinding',
      'lab-test-node-reader',
      '--clusterrole=lab-test-node-reader',
      '--serviceaccount=lab-test:nobody',
    ]);
    assert.equal((await g.ok(`kubectl --kubeconfig ${kubeconfig} auth can-i list nodes`)).trim(), 'yes');
    assert.match(await g.ok(`kubectl --kubeconfig ${kubeconfig} get nodes -o name`), /node\/node-a/);
  });

  test("a Node's InternalIP can be replaced and removed", async () => {
    await L().setNodeInternalIP('node-b', '192.168.40.9');
    assert.equal((await internalIPs())['node-b'], '192.168.40.9');
    await L().setNodeInternalIP('node-b', undefined);
    assert.equal((await internalIPs())['node-b'], undefined);
    await L().setNodeInternalIP('node-b', LAB_NODES['node-b']);
    assert.deepEqual(await internalIPs(), LAB_NODES);
  });

  test('startInGuest runs a process in the background, and stopInGuest stops it by signal', async () => {
    const pid = await L().startInGuest('node-a', 'sleeper', ['sh', '-c', 'echo "started as $$"; exec sleep 600']);
    const g = L().guest('node-a');
    assert.equal((await g.sh(`kill -0 ${pid}`)).code, 0, 'running');
    assert.equal(await L().exitStatus('node-a', 'sleeper'), undefined);
    assert.equal(
      (await L().guestLog('node-a', 'sleeper')).trim(),
      `started as ${pid}`,
      'the pid returned is the process itself',
    );
    await assert.rejects(L().startInGuest('node-a', 'sleeper', ['true']), /already runs/);
    assert.deepEqual(await L().stopInGuest('node-a', 'sleeper', 'TERM'), { status: 143, killed: false });
    assert.notEqual((await g.sh(`kill -0 ${pid}`)).code, 0, 'gone');

    // A background job of sh starts with SIGINT ignored; the harness undoes that, so a
    // test can stop an agent with Ctrl-C's signal.
    await L().startInGuest('node-b', 'interrupted', ['sleep', '600']);
    assert.deepEqual(await L().stopInGuest('node-b', 'interrupted', 'INT'), { status: 130, killed: false });

    // One that ignores the signal is killed after the grace period.
    await L().startInGuest('node-b', 'stubborn', [
      'sh',
      '-c',
      'trap "" TERM; echo trapped; while true; do sleep 1; done',
    ]);
    // Only once the trap is set: a TERM before it would end the shell at once.
    await eventually(
      'the trap to be set',
      async () => ((await L().guestLog('node-b', 'stubborn')).includes('trapped') ? true : undefined),
      quick,
    );
    assert.deepEqual(await L().stopInGuest('node-b', 'stubborn', 'TERM', 1000), { status: 137, killed: true });

    // The environment given reaches the process.
    await L().startInGuest('node-b', 'env', ['sh', '-c', 'echo "$LAB_VALUE"'], { env: { LAB_VALUE: "it's here" } });
    await eventually(
      'env process to finish',
      async () => ((await L().exitStatus('node-b', 'env')) === 0 ? true : undefined),
      quick,
    );
    assert.equal((await L().guestLog('node-b', 'env')).trim(), "it's here");
    assert.deepEqual(await L().stopInGuest('node-b', 'env'), { status: 0, killed: false });
  });

  test("startAgent runs the checkout's agent CLI in the guest, with its output in agentLog", async () => {
    // A flag the CLI does not have: exit 2 (bad input), naming it. Cluster mode itself is
    // the agent tests' business.
    await L().startAgent('node-a', ['--no-such-flag']);
    await eventually(
      'the agent to exit',
      async () => ((await L().exitStatus('node-a', 'agent-node-a')) !== undefined ? true : undefined),
      { ...quick, timeoutMs: 30_000 },
    );
    assert.match(await L().agentLog('node-a'), /no-such-flag/);
    assert.deepEqual(await L().stopAgent('node-a'), { status: 2, killed: false });
  });

  test('api.pause() takes the API server away, resume() brings it back with every object; restart() does both', async (t) => {
    const g = L().guest('node-a');
    const kubeconfig = L().adminKubeconfigForGuests();
    await L().api.pause();
    const away = await L().api.kubectl(['get', 'nodes'], { timeoutMs: 20_000 });
    assert.notEqual(away.code, 0, 'no answer while paused');
    assert.notEqual((await g.sh(`kubectl --kubeconfig ${kubeconfig} get nodes --request-timeout=3s`)).code, 0);
    let started = Date.now();
    await L().api.resume();
    t.diagnostic(`resume took ${Date.now() - started} ms`);
    assert.deepEqual(await internalIPs(), LAB_NODES);

    started = Date.now();
    await L().api.restart();
    t.diagnostic(`restart took ${Date.now() - started} ms`);
    assert.deepEqual(await internalIPs(), LAB_NODES);
    const out = await g.ok(`kubectl --kubeconfig ${kubeconfig} get nodes -o name`);
    assert.deepEqual(out.trim().split('\n').sort(), ['node/node-a', 'node/node-b'], 'guests reach it again, same port');
  });

  test('stop() removes the namespace and every process of the lab, and is safe to call twice', async (t) => {
    const { netns } = L();
    const apiDir = L().api.dir;
    await L().startInGuest('node-a', 'left-running', ['sleep', '600']);
    const pids = spawnSync('ip', ['netns', 'pids', netns], { encoding: 'utf8' })
      .stdout.split('\n')
      .filter(Boolean)
      .map(Number);
    // A guest's processes are named after its kernel binary (`linux` for the lab kernel's): told by that binary.
    const kernel = realpathSync(L().guest('node-a').kernel);
    const whatIs = (pid: number): string | undefined => (exeOf(pid) === kernel ? GUEST : commOf(pid));
    const names = new Set(pids.map(whatIs));
    // Guards the check below: the processes it watches are the lab's.
    for (const name of [GUEST, 'kube-apiserver', 'etcd'])
      assert.ok(names.has(name), `${name} runs in ${netns}: ${[...names].join(', ')}`);
    const guestMB = pids.filter((p) => whatIs(p) === GUEST).reduce((sum, p) => sum + pssKB(p), 0) / 1024;

    const started = Date.now();
    await L().stop();
    t.diagnostic(
      `lab stopped in ${Date.now() - started} ms; its ${NODES.length} guests used ${guestMB.toFixed(0)} MB (PSS of all their processes)`,
    );
    await L().stop();

    assert.doesNotMatch(
      spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout,
      new RegExp(`^${netns}( |$)`, 'm'),
    );
    const left = pids.filter((p) => [GUEST, 'kube-apiserver', 'etcd'].includes(whatIs(p) ?? ''));
    assert.deepEqual(left, [], 'no process of the lab remains');
    assert.equal(existsSync(apiDir), false, 'the API server dir is removed');
  });
});

/** What a process of a guest's kernel is called in the checks. */
const GUEST = 'a guest kernel';

/** The binary a process runs, or undefined once it is gone. */
function exeOf(pid: number): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/exe`);
  } catch {
    return undefined;
  }
}

/** A process's name, or undefined once it is gone (a zombie counts as gone: it runs nothing). */
function commOf(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state === 'Z' ? undefined : stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
  } catch {
    return undefined;
  }
}

/** Proportional set size: shared pages (a guest's RAM is shared by its processes) count once in a sum. */
function pssKB(pid: number): number {
  try {
    return Number(/^Pss:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))?.[1] ?? 0);
  } catch {
    return 0;
  }
}
