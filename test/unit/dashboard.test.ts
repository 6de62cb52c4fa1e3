// The Grafana dashboard shipped with the chart (deploy/helm/ipip-operator/dashboards/): it
// loads as Grafana expects, it queries only what the agent exports (metric names, labels,
// legends checked against the exposition of a populated AgentMetrics), and every panel
// expression is PromQL that Prometheus' own parser accepts (promtool check rules).

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import type { Action } from '../../src/model/action.ts';
import { AgentMetrics } from '../../src/report/metrics.ts';
import { LAB_METRICS } from './builders.ts';

const REPO = new URL('../../', import.meta.url).pathname;
const DASHBOARD_FILE = join(REPO, 'deploy/helm/ipip-operator/dashboards/ipip-operator.json');

interface Ref {
  type?: string;
  uid?: string;
}
interface Target {
  refId: string;
  expr: string;
  legendFormat?: string;
  datasource?: Ref;
}
interface Panel {
  id: number;
  type: string;
  title: string;
  gridPos: { h: number; w: number; x: number; y: number };
  datasource?: Ref;
  targets?: Target[];
  panels?: Panel[];
}
interface Variable {
  name: string;
  type: string;
  query: string | { query: string };
  datasource?: Ref;
  allValue?: string;
  includeAll?: boolean;
}
interface Dashboard {
  uid: string;
  title: string;
  schemaVersion: number;
  panels: Panel[];
  templating: { list: Variable[] };
}

function loadDashboard(): Dashboard {
  return JSON.parse(readFileSync(DASHBOARD_FILE, 'utf8')) as Dashboard;
}

/** Every panel, those inside collapsed rows included. */
function allPanels(d: Dashboard): Panel[] {
  return d.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
}

interface Expression {
  where: string;
  expr: string;
  legend: string;
}

function expressions(d: Dashboard): Expression[] {
  return allPanels(d).flatMap((p) =>
    (p.targets ?? []).map((t) => ({
      where: `panel ${p.id} "${p.title}" ${t.refId}`,
      expr: t.expr,
      legend: t.legendFormat ?? '',
    })),
  );
}

function variableQuery(v: Variable): string {
  return typeof v.query === 'string' ? v.query : v.query.query;
}

// ---- What the agent exports -------------------------------------------------------------

/** An AgentMetrics with a series in every family: each record method called once. */
async function populatedExposition(): Promise<string> {
  const metrics = new AgentMetrics();
  metrics.setTunnels([{ ...LAB_METRICS, foreignIpipDropped: 4, masqueraded: 2 }]);
  metrics.recordReconcile('success', 0.01);
  const action: Action = {
    tool: 'ip',
    kind: 'link',
    verb: 'create',
    tunnel: 'lab',
    link: 'ipiptun',
    detail: '',
    ops: [],
  };
  metrics.recordChanges([{ action }]);
  metrics.recordDriftCorrections(1);
  metrics.recordList('nodes', 'expired');
  metrics.setLeader(true);
  metrics.commandObserver('ip', 'observe', 0.003, true);
  metrics.commandObserver('nft', 'observe', 0.003, true);
  metrics.recordApiRequest('watch', true);
  return metrics.metrics();
}

/** Labels Prometheus adds to every series it scrapes. */
const TARGET_LABELS = ['instance', 'job'];

interface Exported {
  /** Series name (histograms as _bucket, _sum, _count) → its label names. */
  labels: Map<string, Set<string>>;
  /** Series names that are counters or parts of a histogram: the ones rate() belongs on. */
  cumulative: Set<string>;
  /** Family name → TYPE. */
  families: Map<string, string>;
}

function parseExposition(text: string): Exported {
  const labels = new Map<string, Set<string>>();
  const families = new Map<string, string>();
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type !== null) families.set(type[1]!, type[2]!);
    if (line === '' || line.startsWith('#')) continue;
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+\S+$/.exec(line);
    assert.ok(sample !== null, `an exposition line: ${line}`);
    const names = labels.get(sample[1]!) ?? new Set<string>();
    for (const m of (sample[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="(?:[^"\\]|\\.)*"/g)) names.add(m[1]!);
    labels.set(sample[1]!, names);
  }
  const cumulative = new Set<string>();
  for (const [family, type] of families) {
    if (type === 'counter') cumulative.add(family);
    if (type === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) cumulative.add(`${family}${suffix}`);
  }
  return { labels, cumulative, families };
}

// ---- A small reading of PromQL: enough to name the metrics, matchers and labels used ----

const KEYWORDS = new Set([
  'by',
  'without',
  'on',
  'ignoring',
  'group_left',
  'group_right',
  'bool',
  'and',
  'or',
  'unless',
  'offset',
  'inf',
  'nan',
  'atan2',
]);
const GRAFANA_GLOBALS: Record<string, string> = { __rate_interval: '5m', __range: '1h', __interval: '1m' };

/** The expression with strings emptied, matchers, ranges and by/without/on/ignoring lists removed. */
function skeleton(expr: string): string {
  return expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ');
}

/** Metric names in an expression: identifiers that are not functions, keywords or numbers. */
function metricNames(expr: string): string[] {
  const s = skeleton(expr);
  const names: string[] = [];
  for (const m of s.matchAll(/(?<![\w.:])[a-zA-Z_:][a-zA-Z0-9_:]*/g)) {
    if (KEYWORDS.has(m[0].toLowerCase())) continue;
    if (
      s
        .slice(m.index + m[0].length)
        .trimStart()
        .startsWith('(')
    )
      continue;
    names.push(m[0]);
  }
  return names;
}

/** Each `name{matchers}` selector: the metric and the label names its matchers use. */
function selectors(expr: string): Array<{ metric: string; labels: string[] }> {
  return [...expr.matchAll(/([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}/g)].map((m) => ({
    metric: m[1]!,
    labels: [...m[2]!.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)/g)].map((l) => l[1]!),
  }));
}

/** Labels named in by (...) clauses. */
function byLabels(expr: string): string[] {
  return [...expr.matchAll(/\bby\s*\(([^)]*)\)/g)].flatMap((m) =>
    m[1]!
      .split(',')
      .map((l) => l.trim())
      .filter((l) => l !== ''),
  );
}

/** The text between the parentheses of each call of `fn`. */
function callArguments(expr: string, fn: string): string[] {
  const args: string[] = [];
  for (const m of expr.matchAll(new RegExp(`\\b${fn}\\s*\\(`, 'g'))) {
    const open = m.index + m[0].length;
    let depth = 1;
    let i = open;
    for (; i < expr.length && depth > 0; i++) {
      if (expr[i] === '(') depth++;
      if (expr[i] === ')') depth--;
    }
    args.push(expr.slice(open, i - 1));
  }
  return args;
}

/** The expression without the arguments of rate/irate/increase calls. */
function outsideRates(expr: string): string {
  let s = expr;
  for (const fn of ['rate', 'irate', 'increase']) for (const arg of callArguments(s, fn)) s = s.replace(arg, ' ');
  return s;
}

function variableReferences(expr: string): string[] {
  return [...expr.matchAll(/\$(?:\{(\w+)(?::\w+)?\}|(\w+))/g)].map((m) => m[1] ?? m[2]!);
}

/** What is wrong with the dashboard's queries, checked against the exposition; [] when nothing. */
function problems(d: Dashboard, exported: Exported): string[] {
  const found: string[] = [];
  const labelsOf = (metric: string) => new Set([...(exported.labels.get(metric) ?? []), ...TARGET_LABELS]);
  const variables = new Set(d.templating.list.map((v) => v.name));

  const checkSelectors = (where: string, expr: string) => {
    for (const name of metricNames(expr)) {
      if (!exported.labels.has(name)) found.push(`${where}: ${name} is not a metric the agent exports`);
    }
    for (const { metric, labels } of selectors(expr)) {
      for (const label of labels) {
        if (exported.labels.has(metric) && !labelsOf(metric).has(label))
          found.push(`${where}: ${metric} has no label ${label}`);
      }
    }
    for (const name of variableReferences(expr)) {
      if (!variables.has(name) && !(name in GRAFANA_GLOBALS))
        found.push(`${where}: $${name} is not a variable of the dashboard`);
    }
  };

  for (const { where, expr, legend } of expressions(d)) {
    checkSelectors(where, expr);
    const names = metricNames(expr);
    const available = new Set(names.flatMap((n) => [...labelsOf(n)]));
    for (const label of byLabels(expr)) {
      if (!available.has(label)) found.push(`${where}: by (${label}), a label none of ${names.join(', ')} has`);
    }
    for (const arg of callArguments(expr, 'histogram_quantile')) {
      const series = metricNames(arg.slice(arg.indexOf(',') + 1));
      for (const name of series)
        if (!name.endsWith('_bucket')) found.push(`${where}: histogram_quantile over ${name}, not a _bucket series`);
      if (/\b(sum|avg|max|min|count)\b/.test(arg) && !byLabels(arg).includes('le'))
        found.push(`${where}: histogram_quantile over an aggregation that drops le`);
    }
    for (const fn of ['rate', 'irate', 'increase']) {
      for (const arg of callArguments(expr, fn)) {
        for (const name of metricNames(arg))
          if (!exported.cumulative.has(name)) found.push(`${where}: ${fn}(${name}), not a counter`);
      }
    }
    for (const name of metricNames(outsideRates(expr))) {
      if (exported.cumulative.has(name))
        found.push(`${where}: ${name} is a counter, plotted without rate() or increase()`);
    }
    // A legend can only name labels the result keeps: the by (...) labels after an
    // aggregation, the series' own labels otherwise.
    const by = byLabels(expr);
    const aggregated = by.length > 0 || /^\s*(sum|count|avg|min|max)\s*\(/.test(expr);
    const kept = by.length > 0 ? new Set(by) : aggregated ? new Set<string>() : available;
    for (const m of legend.matchAll(/\{\{\s*(\w+)\s*\}\}/g)) {
      if (!kept.has(m[1]!)) found.push(`${where}: the legend names {{${m[1]}}}, which the result does not have`);
    }
  }

  for (const v of d.templating.list.filter((v) => v.type === 'query')) {
    const where = `variable ${v.name}`;
    const query = /^label_values\((.+),\s*(\w+)\)$/.exec(variableQuery(v).trim());
    if (query === null) {
      found.push(`${where}: not label_values(selector, label): ${variableQuery(v)}`);
      continue;
    }
    checkSelectors(where, query[1]!);
    for (const name of metricNames(query[1]!)) {
      if (exported.labels.has(name) && !labelsOf(name).has(query[2]!))
        found.push(`${where}: ${name} has no label ${query[2]}`);
    }
  }
  return found;
}

/** The expression as Prometheus would receive it: Grafana's globals and the variables set to match all. */
function substituted(expr: string, d: Dashboard): string {
  let s = expr;
  for (const [name, value] of Object.entries(GRAFANA_GLOBALS))
    s = s.replaceAll(`$${name}`, value).replaceAll(`\${${name}}`, value);
  for (const v of d.templating.list.filter((v) => v.type === 'query')) {
    s = s.replace(new RegExp(`\\$\\{${v.name}(?::\\w+)?\\}|\\$${v.name}\\b`, 'g'), '.*');
  }
  assert.doesNotMatch(s, /\$/, `every variable substituted in: ${s}`);
  return s;
}

/** `promtool check rules` on each expression as a recording rule. */
function promtoolCheckRules(exprs: string[]): { status: number | null; output: string } {
  const dir = mkdtempSync(join(tmpdir(), 'ipip-dashboard-'));
  try {
    const file = join(dir, 'rules.yaml');
    // JSON is YAML.
    const groups = [
      { name: 'dashboard', rules: exprs.map((expr, i) => ({ record: `dashboard:panel_${i + 1}`, expr })) },
    ];
    writeFileSync(file, JSON.stringify({ groups }, null, 2));
    const checked = spawnSync('promtool', ['check', 'rules', file], { encoding: 'utf8' });
    if (checked.error !== undefined) {
      assert.fail(
        `promtool is needed to check the dashboard's PromQL (${checked.error.message}): apt-get install -y prometheus (or run scripts/setup.sh)`,
      );
    }
    return { status: checked.status, output: `${checked.stdout}${checked.stderr}` };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---- The tests ------------------------------------------------------------------------

/** How every panel and variable names its datasource: Grafana's variable, not a JavaScript template. */
// biome-ignore lint/suspicious/noTemplateCurlyInString: Grafana's variable syntax
const DATASOURCE_REF = { type: 'prometheus', uid: '${datasource}' };

describe('Grafana dashboard', () => {
  test('is a dashboard Grafana loads as it is: uid and title ipip-operator, schemaVersion 39, unique panel ids on a 24-column grid', () => {
    const d = loadDashboard();
    assert.equal(d.uid, 'ipip-operator');
    assert.equal(d.title, 'ipip-operator');
    assert.equal(d.schemaVersion, 39);
    assert.equal((d as unknown as { id?: unknown }).id, undefined, 'no database id: provisioning assigns one');
    const panels = allPanels(d);
    assert.ok(panels.length >= 20, `${panels.length} panels`);
    const ids = panels.map((p) => p.id);
    assert.equal(new Set(ids).size, ids.length, `unique ids: ${ids.join(' ')}`);
    for (const p of panels) {
      const { x, y, w, h } = p.gridPos;
      assert.ok(
        Number.isInteger(x) && Number.isInteger(y) && w > 0 && h > 0 && x >= 0 && x + w <= 24,
        `${p.title}: gridPos ${JSON.stringify(p.gridPos)}`,
      );
      assert.ok(p.title.trim() !== '', `panel ${p.id} has a title`);
    }
    // No two panels overlap.
    const cells = new Map<string, string>();
    for (const p of panels) {
      for (let row = p.gridPos.y; row < p.gridPos.y + p.gridPos.h; row++) {
        for (let col = p.gridPos.x; col < p.gridPos.x + p.gridPos.w; col++) {
          const taken = cells.get(`${row},${col}`);
          assert.equal(taken, undefined, `"${p.title}" overlaps "${taken}" at row ${row}, column ${col}`);
          cells.set(`${row},${col}`, p.title);
        }
      }
    }
  });

  test("has the datasource, job, node and tunnel variables, and every query goes to the chosen data source and the agents' jobs", () => {
    const d = loadDashboard();
    const byName = new Map(d.templating.list.map((v) => [v.name, v]));
    assert.deepEqual([...byName.keys()], ['datasource', 'job', 'node', 'tunnel']);
    assert.equal(byName.get('datasource')?.type, 'datasource');
    assert.equal(byName.get('datasource')?.query, 'prometheus');
    assert.equal(variableQuery(byName.get('job')!), 'label_values(ipip_operator_reconcile_total, job)');
    assert.match(variableQuery(byName.get('node')!), /^label_values\(ipip_operator_\w+\{job=~"\$job"\}, instance\)$/);
    assert.match(
      variableQuery(byName.get('tunnel')!),
      /^label_values\(ipip_operator_tunnel_up\{job=~"\$job", instance=~"\$node"\}, tunnel\)$/,
    );
    for (const name of ['node', 'tunnel']) {
      const v = byName.get(name)!;
      assert.deepEqual([v.type, v.includeAll, v.allValue, v.datasource], ['query', true, '.*', DATASOURCE_REF], name);
    }
    // The job's All is what Grafana makes of the values it found, (job1|job2): the agents'
    // jobs. An allValue of .* would be every target Prometheus scrapes.
    const job = byName.get('job')!;
    assert.deepEqual(
      [job.type, job.includeAll, job.allValue, job.datasource],
      ['query', true, undefined, DATASOURCE_REF],
    );
    for (const p of allPanels(d).filter((p) => p.type !== 'row')) {
      assert.deepEqual(p.datasource, DATASOURCE_REF, p.title);
      assert.ok((p.targets ?? []).length > 0, `${p.title} has a query`);
      const refIds = p.targets!.map((t) => t.refId);
      assert.equal(new Set(refIds).size, refIds.length, `${p.title}: unique refIds`);
      for (const t of p.targets!) {
        assert.deepEqual(t.datasource, DATASOURCE_REF, `${p.title} ${t.refId}`);
        for (const { metric, labels } of selectors(t.expr))
          assert.ok(labels.includes('job'), `${p.title} ${t.refId}: ${metric} selected by the agents' job`);
        assert.equal(
          metricNames(t.expr).length,
          selectors(t.expr).length,
          `${p.title} ${t.refId}: every metric has a selector`,
        );
        // Node-specific panels follow the node selector (the Lease holder count is cluster-wide).
        if (!t.expr.startsWith('sum(ipip_operator_status_leader{'))
          assert.match(t.expr, /instance=~"\$node"/, `${p.title} ${t.refId}`);
      }
    }
  });

  test('has the panels users need, and uses every metric family the agent exports', async () => {
    const d = loadDashboard();
    const exported = parseExposition(await populatedExposition());
    const used = new Set(expressions(d).flatMap((e) => metricNames(e.expr)));
    const family = (series: string) => series.replace(/_(bucket|sum|count)$/, '');
    const usedFamilies = new Set([...used].map(family));
    const ours = [...exported.families.keys()].filter((f) => f.startsWith('ipip_operator_'));
    assert.ok(ours.length >= 18, `${ours.length} families`);
    assert.deepEqual(
      ours.filter((f) => !usedFamilies.has(f)),
      [],
      'families of ours with no panel',
    );
    for (const name of ['process_resident_memory_bytes', 'process_cpu_seconds_total']) assert.ok(used.has(name), name);

    const byTitle = new Map(allPanels(d).map((p) => [p.title, p]));
    const exprsOf = (title: string) => {
      const p = byTitle.get(title);
      assert.ok(p !== undefined, `a panel "${title}" among: ${[...byTitle.keys()].join(' | ')}`);
      return p.targets!.map((t) => t.expr);
    };
    assert.match(exprsOf('Tunnel links up')[0]!, /^sum\(ipip_operator_tunnel_up\{/);
    assert.match(exprsOf('Tunnel links down')[0]!, /^count\(ipip_operator_tunnel_up\{[^}]*\} == 0\)/);
    assert.equal(byTitle.get('Tunnel link up, per tunnel and node')?.type, 'state-timeline');
    assert.deepEqual(
      exprsOf('Reconcile duration').map((e) => /^histogram_quantile\((0\.\d+),/.exec(e)?.[1]),
      ['0.5', '0.99'],
    );
    assert.match(
      exprsOf('Reconcile passes by result')[0]!,
      /^sum by \(result\) \(rate\(ipip_operator_reconcile_total\{/,
    );
    assert.match(
      exprsOf('ip command duration, p99 by purpose')[0]!,
      /^histogram_quantile\(0\.99, sum by \(le, purpose\)/,
    );
  });

  test('every metric, label, legend and variable it uses is one the agent exports (AgentMetrics, populated)', async () => {
    const exposition = await populatedExposition();
    const exported = parseExposition(exposition);
    // Every family of ours has a series, so a name missing below means the agent does not
    // export it. (Of the default metrics some have none until there is something to count,
    // nodejs_active_requests for one; the dashboard uses ones that always have a series.)
    for (const [familyName, type] of [...exported.families].filter(([f]) => f.startsWith('ipip_operator_'))) {
      const series = type === 'histogram' ? `${familyName}_bucket` : familyName;
      assert.ok(exported.labels.has(series), `${familyName} has a series in the populated exposition`);
    }
    const d = loadDashboard();
    assert.ok(
      expressions(d).some((e) => e.expr.includes('histogram_quantile(')),
      'the histogram check has something to check',
    );
    assert.deepEqual(problems(d, exported), []);
  });

  test('those checks fail a dashboard with an unknown metric, a wrong label, a bad histogram_quantile, a raw counter, a wrong legend or variable', async () => {
    const exported = parseExposition(await populatedExposition());
    const d = loadDashboard();
    const broken: Target[] = [
      { refId: 'A', expr: 'sum(rate(ipip_operator_tunnels_total{instance=~"$node"}[$__rate_interval]))' },
      { refId: 'B', expr: 'ipip_operator_tunnel_up{node=~"$node"}' },
      { refId: 'C', expr: 'histogram_quantile(0.9, rate(ipip_operator_reconcile_duration_seconds_sum[5m]))' },
      {
        refId: 'D',
        expr: 'histogram_quantile(0.9, sum by (instance) (rate(ipip_operator_reconcile_duration_seconds_bucket[5m])))',
      },
      { refId: 'E', expr: 'ipip_operator_reconcile_total{instance=~"$nodes"}' },
      { refId: 'F', expr: 'sum by (result) (rate(ipip_operator_reconcile_total[5m]))', legendFormat: '{{instance}}' },
      { refId: 'G', expr: 'rate(ipip_operator_tunnel_up[5m])' },
      { refId: 'H', expr: 'sum by (purpose) (rate(ipip_operator_reconcile_total[5m]))' },
    ];
    d.panels.push({
      id: 999,
      type: 'timeseries',
      title: 'broken',
      gridPos: { x: 0, y: 999, w: 1, h: 1 },
      targets: broken,
    });
    const found = problems(d, exported);
    for (const expected of [
      'panel 999 "broken" A: ipip_operator_tunnels_total is not a metric the agent exports',
      'panel 999 "broken" B: ipip_operator_tunnel_up has no label node',
      'panel 999 "broken" C: histogram_quantile over ipip_operator_reconcile_duration_seconds_sum, not a _bucket series',
      'panel 999 "broken" D: histogram_quantile over an aggregation that drops le',
      'panel 999 "broken" E: $nodes is not a variable of the dashboard',
      'panel 999 "broken" E: ipip_operator_reconcile_total is a counter, plotted without rate() or increase()',
      'panel 999 "broken" F: the legend names {{instance}}, which the result does not have',
      'panel 999 "broken" G: rate(ipip_operator_tunnel_up), not a counter',
      'panel 999 "broken" H: by (purpose), a label none of ipip_operator_reconcile_total has',
    ]) {
      assert.ok(found.includes(expected), `${expected}\nin:\n${found.join('\n')}`);
    }
    assert.deepEqual(metricNames('count(a_b{x="y"} == 0) or vector(0) + 1e3 * max by (le) (c:d[5m] offset 1h)'), [
      'a_b',
      'c:d',
    ]);
  });
});

describe("the dashboard's PromQL, checked by promtool", () => {
  test('every panel expression parses (promtool check rules, one recording rule each)', () => {
    const d = loadDashboard();
    const exprs = expressions(d).map((e) => substituted(e.expr, d));
    const checked = promtoolCheckRules(exprs);
    assert.equal(checked.status, 0, checked.output);
    assert.match(checked.output, new RegExp(`SUCCESS: ${exprs.length} rules found`));
  });

  test("with every variable on All, the process panels show the agents, not the node's other targets (promtool test rules)", () => {
    const d = loadDashboard();
    const panels = allPanels(d).filter((p) => ['Memory', 'CPU', 'Event loop lag, p99'].includes(p.title));
    assert.equal(panels.length, 3);
    // Grafana's All for a variable without allValue: its values as one regex, here the
    // jobs of the chart's ServiceMonitor and PodMonitor; node's and tunnel's All is .*.
    const all = (expr: string) => substituted(expr.replaceAll('$job', '(ipip-operator|monitoring/ipip-operator)'), d);
    const exprs = panels.flatMap((p) => p.targets!.map((t) => all(t.expr)));
    const dir = mkdtempSync(join(tmpdir(), 'ipip-dashboard-'));
    try {
      const agent = 'job="ipip-operator",instance="192.168.40.2:9477"';
      // On the same node: node-exporter and some other Node.js service, with the same default metrics.
      const others = ['job="node-exporter",instance="192.168.40.2:9100"', 'job="web",instance="192.168.40.2:3000"'];
      const series = (name: string) =>
        [agent, ...others].map((labels) => ({ series: `${name}{${labels}}`, values: '0+60x10' }));
      const names = [
        'process_resident_memory_bytes',
        'nodejs_heap_size_used_bytes',
        'process_cpu_seconds_total',
        'nodejs_eventloop_lag_p99_seconds',
      ];
      writeFileSync(join(dir, 'rules.yaml'), JSON.stringify({ groups: [] }));
      const tests = {
        rule_files: ['rules.yaml'],
        evaluation_interval: '1m',
        tests: [
          {
            interval: '1m',
            input_series: names.flatMap(series),
            promql_expr_test: exprs.map((expr) => ({
              expr,
              eval_time: '10m',
              exp_samples: [
                {
                  labels: expr.startsWith('rate(')
                    ? '{job="ipip-operator",instance="192.168.40.2:9477"}'
                    : `${/^(\w+)/.exec(expr)![1]}{job="ipip-operator",instance="192.168.40.2:9477"}`,
                  value: expr.startsWith('rate(') ? 1 : 600,
                },
              ],
            })),
          },
        ],
      };
      writeFileSync(join(dir, 'tests.yaml'), JSON.stringify(tests, null, 2));
      const t = spawnSync('promtool', ['test', 'rules', 'tests.yaml'], { cwd: dir, encoding: 'utf8' });
      if (t.error !== undefined) assert.fail(`promtool is needed (${t.error.message}): apt-get install -y prometheus`);
      assert.equal(t.status, 0, `${t.stdout}${t.stderr}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('promtool rejects an expression that does not parse (so the check above can fail)', () => {
    const checked = promtoolCheckRules(['sum(rate(ipip_operator_reconcile_total[5m])']);
    assert.notEqual(checked.status, 0);
    assert.match(checked.output, /parse error|unclosed|unexpected/i);
  });
});
