// What a Prometheus user sees in the agent's exposition text, and that Prometheus' own
// checker (promtool, from Debian's prometheus package) accepts it without a lint warning.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, test } from 'node:test';
import type { Action, ActionResult } from '../../src/model/action.ts';
import { AgentMetrics } from '../../src/report/metrics.ts';
import { LAB_METRICS, STATS } from './builders.ts';

/** The sample lines of the exposition (no # HELP / # TYPE), as Prometheus would ingest them. */
async function samples(metrics: AgentMetrics): Promise<string[]> {
  return (await metrics.metrics()).split('\n').filter((line) => line !== '' && !line.startsWith('#'));
}

/** The sample lines of one metric family of ours (name without the prefix). */
async function family(metrics: AgentMetrics, name: string): Promise<string[]> {
  return (await samples(metrics)).filter(
    (line) => line.startsWith(`ipip_operator_${name}{`) || line.startsWith(`ipip_operator_${name} `),
  );
}

const LAB = LAB_METRICS;

function result(kind: Action['kind'], verb: Action['verb'], error?: string): ActionResult {
  const action: Action = { tool: 'ip', kind, verb, tunnel: 'lab', link: 'ipiptun', detail: '', ops: [] };
  return error === undefined ? { action } : { action, error };
}

describe('AgentMetrics exposition', () => {
  test('the kernel counters of a tunnel link, as counters labelled tunnel and link', async () => {
    const metrics = new AgentMetrics();
    metrics.setTunnels([LAB]);
    const text = await metrics.metrics();
    const lines = await samples(metrics);
    const expected: Array<[string, number]> = [
      ['tunnel_receive_bytes_total', 1234],
      ['tunnel_transmit_bytes_total', 5678],
      ['tunnel_receive_packets_total', 12],
      ['tunnel_transmit_packets_total', 34],
      ['tunnel_receive_errors_total', 1],
      ['tunnel_transmit_errors_total', 3],
      ['tunnel_receive_drops_total', 2],
      ['tunnel_transmit_drops_total', 4],
    ];
    for (const [name, value] of expected) {
      assert.ok(
        lines.includes(`ipip_operator_${name}{tunnel="lab",link="ipiptun"} ${value}`),
        `${name} ${value} in:\n${lines.join('\n')}`,
      );
      assert.match(text, new RegExp(`^# TYPE ipip_operator_${name} counter$`, 'm'));
    }
    assert.deepEqual(await family(metrics, 'tunnel_up'), ['ipip_operator_tunnel_up{tunnel="lab",link="ipiptun"} 1']);
    assert.deepEqual(await family(metrics, 'tunnel_info'), [
      'ipip_operator_tunnel_info{tunnel="lab",link="ipiptun",mode="ipip",local="192.168.40.2",remote="192.168.40.3"} 1',
    ]);
  });

  test('setTunnels replaces the set: a removed tunnel loses every series, new values replace old ones', async () => {
    const metrics = new AgentMetrics();
    metrics.setTunnels([LAB, { ...LAB, tunnel: 'old', link: 'oldtun', up: false }]);
    assert.equal((await family(metrics, 'tunnel_receive_bytes_total')).length, 2);
    assert.ok((await family(metrics, 'tunnel_up')).includes('ipip_operator_tunnel_up{tunnel="old",link="oldtun"} 0'));

    metrics.setTunnels([{ ...LAB, stats: { ...STATS, rxBytes: 2000 } }]);
    const lines = await samples(metrics);
    assert.deepEqual(
      lines.filter((line) => line.includes('tunnel="old"')),
      [],
    );
    // The kernel's absolute value, not 1234 + 2000.
    assert.deepEqual(await family(metrics, 'tunnel_receive_bytes_total'), [
      'ipip_operator_tunnel_receive_bytes_total{tunnel="lab",link="ipiptun"} 2000',
    ]);
  });

  test('a tunnel link without counters has up and info but no counter series', async () => {
    const metrics = new AgentMetrics();
    const { stats: _, ...withoutStats } = LAB;
    metrics.setTunnels([{ ...withoutStats, up: false }]);
    assert.deepEqual(await family(metrics, 'tunnel_up'), ['ipip_operator_tunnel_up{tunnel="lab",link="ipiptun"} 0']);
    assert.deepEqual(await family(metrics, 'tunnel_transmit_packets_total'), []);
  });

  test('dataplane changes: all 12 object/action pairs exist at 0; only successful actions count', async () => {
    const metrics = new AgentMetrics();
    const zero = await family(metrics, 'dataplane_changes_total');
    assert.equal(zero.length, 12);
    for (const object of ['link', 'address', 'route', 'rules']) {
      for (const action of ['create', 'update', 'delete']) {
        assert.ok(
          zero.includes(`ipip_operator_dataplane_changes_total{object="${object}",action="${action}"} 0`),
          `${object}/${action} in:\n${zero.join('\n')}`,
        );
      }
    }
    metrics.recordChanges([
      result('link', 'create'),
      result('route', 'create'),
      result('route', 'create'),
      result('address', 'delete', 'RTNETLINK answers: Permission denied'),
    ]);
    const after = await family(metrics, 'dataplane_changes_total');
    assert.ok(after.includes('ipip_operator_dataplane_changes_total{object="link",action="create"} 1'));
    assert.ok(after.includes('ipip_operator_dataplane_changes_total{object="route",action="create"} 2'));
    assert.ok(after.includes('ipip_operator_dataplane_changes_total{object="address",action="delete"} 0'));
  });

  test('reconciles by result with their duration; drift corrections', async () => {
    const metrics = new AgentMetrics();
    assert.deepEqual((await family(metrics, 'reconcile_total')).sort(), [
      'ipip_operator_reconcile_total{result="error"} 0',
      'ipip_operator_reconcile_total{result="requeue"} 0',
      'ipip_operator_reconcile_total{result="success"} 0',
    ]);
    metrics.recordReconcile('success', 0.02);
    metrics.recordReconcile('success', 0.03);
    metrics.recordReconcile('error', 1.5);
    metrics.recordDriftCorrections(2);
    metrics.recordDriftCorrections(1);
    const lines = await samples(metrics);
    assert.ok(lines.includes('ipip_operator_reconcile_total{result="success"} 2'));
    assert.ok(lines.includes('ipip_operator_reconcile_total{result="error"} 1'));
    assert.ok(lines.includes('ipip_operator_reconcile_duration_seconds_count 3'));
    assert.ok(lines.includes('ipip_operator_reconcile_duration_seconds_bucket{le="0.05"} 2'));
    assert.ok(lines.includes('ipip_operator_drift_corrections_total 3'));
  });

  test('ip commands by purpose and result, their duration; API server requests by verb and result', async () => {
    const metrics = new AgentMetrics();
    // Passed unbound, as the dataplane and the cluster client will call them.
    const { commandObserver, recordApiRequest } = metrics;
    commandObserver('ip', 'observe', 0.004, true);
    commandObserver('ip', 'apply', 0.02, false);
    recordApiRequest('list', true);
    recordApiRequest('apply', false);
    recordApiRequest('apply', false);
    const lines = await samples(metrics);
    assert.ok(lines.includes('ipip_operator_ip_commands_total{purpose="observe",result="success"} 1'));
    assert.ok(lines.includes('ipip_operator_ip_commands_total{purpose="apply",result="error"} 1'));
    assert.ok(lines.includes('ipip_operator_ip_commands_total{purpose="monitor",result="error"} 0'));
    assert.ok(lines.includes('ipip_operator_ip_command_duration_seconds_count{purpose="observe"} 1'));
    assert.ok(lines.includes('ipip_operator_ip_command_duration_seconds_bucket{le="0.005",purpose="observe"} 1'));
    assert.ok(lines.includes('ipip_operator_apiserver_requests_total{verb="list",result="success"} 1'));
    assert.ok(lines.includes('ipip_operator_apiserver_requests_total{verb="apply",result="error"} 2'));
  });

  test('nft commands are counted apart from ip commands, by purpose and result', async () => {
    const metrics = new AgentMetrics();
    const { commandObserver } = metrics;
    commandObserver('nft', 'observe', 0.004, true);
    commandObserver('nft', 'apply', 0.02, false);
    const lines = await samples(metrics);
    assert.ok(lines.includes('ipip_operator_nft_commands_total{purpose="observe",result="success"} 1'));
    assert.ok(lines.includes('ipip_operator_nft_commands_total{purpose="apply",result="error"} 1'));
    assert.ok(lines.includes('ipip_operator_nft_command_duration_seconds_count{purpose="apply"} 1'));
    assert.ok(lines.includes('ipip_operator_ip_commands_total{purpose="observe",result="success"} 0'));
  });

  test("the rules' counters per tunnel: foreign IPIP dropped, connections masqueraded; a tunnel without them has no series", async () => {
    const metrics = new AgentMetrics();
    const base = { link: 'ipipmesh', mode: 'ipip', local: '192.168.40.2', remote: '', up: true };
    metrics.setTunnels([
      { ...base, tunnel: 'mesh', foreignIpipDropped: 7, masqueraded: 3 },
      { ...base, tunnel: 'open', link: 'ipipopen' },
    ]);
    let lines = await samples(metrics);
    assert.ok(lines.includes('ipip_operator_foreign_ipip_dropped_packets_total{tunnel="mesh",link="ipipmesh"} 7'));
    assert.ok(lines.includes('ipip_operator_masqueraded_connections_total{tunnel="mesh",link="ipipmesh"} 3'));
    assert.ok(!lines.some((l) => l.includes('tunnel="open"') && l.includes('dropped')), lines.join('\n'));
    // The kernel's count replaces the last one (it is absolute), it is not added to it.
    metrics.setTunnels([{ ...base, tunnel: 'mesh', foreignIpipDropped: 9 }]);
    lines = await samples(metrics);
    assert.ok(lines.includes('ipip_operator_foreign_ipip_dropped_packets_total{tunnel="mesh",link="ipipmesh"} 9'));
    assert.ok(!lines.some((l) => l.startsWith('ipip_operator_masqueraded_connections_total{')), lines.join('\n'));
  });

  test("Node's default process metrics keep their standard names", async () => {
    const text = await new AgentMetrics().metrics();
    assert.match(text, /^process_cpu_user_seconds_total \d/m);
    assert.match(text, /^nodejs_heap_size_total_bytes \d/m);
    assert.doesNotMatch(text, /^ipip_operator_(process|nodejs)_/m);
  });

  test('each AgentMetrics has its own registry', async () => {
    const a = new AgentMetrics();
    const b = new AgentMetrics();
    a.recordReconcile('success', 0.1);
    assert.ok((await samples(b)).includes('ipip_operator_reconcile_total{result="success"} 0'));
  });
});

/** Runs `promtool check metrics` on an exposition; exit 0 is clean, 3 lint only, 1 unparsable. */
function promtool(exposition: string): { status: number | null; output: string } {
  const checked = spawnSync('promtool', ['check', 'metrics'], { input: exposition, encoding: 'utf8' });
  if (checked.error !== undefined) {
    assert.fail(
      `promtool is needed to check the exposition (${checked.error.message}): apt-get install -y prometheus (or run scripts/setup.sh)`,
    );
  }
  return { status: checked.status, output: `${checked.stdout}${checked.stderr}` };
}

/** A metrics instance with every family of ours holding at least one series. */
async function populatedExposition(): Promise<string> {
  const metrics = new AgentMetrics();
  metrics.setTunnels([
    LAB,
    { tunnel: 'waiting', link: 'ipipw', mode: 'ipip', local: '192.168.40.2', remote: '', up: false },
  ]);
  metrics.recordReconcile('success', 0.01);
  metrics.recordList('nodes', 'expired');
  metrics.setLeader(true);
  metrics.recordChanges([result('link', 'create')]);
  metrics.recordDriftCorrections(1);
  metrics.commandObserver('ip', 'observe', 0.003, true);
  metrics.recordApiRequest('watch', true);
  return metrics.metrics();
}

describe('promtool check metrics', () => {
  test('accepts our metric families with no lint output', async () => {
    const ours = (await populatedExposition())
      .split('\n')
      .filter((line) => line.replace(/^# (HELP|TYPE) /, '').startsWith('ipip_operator_'));
    assert.ok(ours.length > 50, 'the filter kept our families');
    const checked = promtool(`${ours.join('\n')}\n`);
    assert.equal(checked.output, '');
    assert.equal(checked.status, 0);
  });

  test('accepts the whole exposition, default process metrics included, with no lint output', async () => {
    const exposition = await populatedExposition();
    assert.match(exposition, /^# TYPE nodejs_active_handles gauge$/m, 'the default metrics are there');
    const checked = promtool(exposition);
    assert.equal(checked.output, '');
    assert.equal(checked.status, 0);
  });

  test('fails a counter without the _total suffix (so the checks above can fail)', () => {
    const checked = promtool(
      '# HELP ipip_operator_thing A thing.\n# TYPE ipip_operator_thing counter\nipip_operator_thing 1\n',
    );
    assert.equal(checked.status, 3);
    assert.match(checked.output, /^ipip_operator_thing counter metrics should have "_total" suffix$/m);
  });
});
