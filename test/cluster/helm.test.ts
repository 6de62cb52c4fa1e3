// The Helm chart (deploy/helm/ipip-operator) and the plain manifests rendered from it
// (deploy/manifests/), with real parts: helm built from Go modules by
// scripts/cluster-tools.sh, a real kube-apiserver + etcd (startApiServer), promtool
// (Debian's prometheus package) for the alerts, and the agent itself, run on this host
// as the chart's ServiceAccount. No kubelet runs, so the DaemonSet never gets pods: the
// agent is started by hand, as the pod would start it, to show that the chart's RBAC
// is enough for it. It is given a node name that is in no tunnel, so it has nothing to
// change in this host's kernel (the test checks that it changed nothing).
//
// Needs the binaries of scripts/cluster-tools.sh: built on first use (minutes), and this
// test FAILS (never skips) with an install hint when they cannot be built.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { parse as parseYaml, parseAllDocuments, stringify } from 'yaml';
import { onProcessExit, withPdeathsig } from '../harness/process-guard.ts';
import { kubeconfigYaml, kubectlOk, run, runHelm, startApiServer } from '../harness/apiserver.ts';
import type { ApiServer, KubectlResult } from '../harness/apiserver.ts';
import { REPO } from '../harness/repo.ts';
import { eventually as waitUntil, GiveUp, StartedByTest } from '../harness/support.ts';

const chart = join(REPO, 'deploy/helm/ipip-operator');
const manifests = join(REPO, 'deploy/manifests/ipip-operator.yaml');
const crdName = 'ipiptunnels.tunnel.ipip-operator.dev';
/** prometheusRule.runbookUrl by default: the runbooks of docs/runbooks/ on the project's GitHub. */
const RUNBOOKS = 'https://github.com/ipip-operator/ipip-operator/blob/main/docs/runbooks';
/** Not the default namespace, so nothing in the chart can be tied to "ipip-operator" by accident. */
const RELEASE = { name: 'ipip-operator', namespace: 'tunnels' };
/** In no IpipTunnel: the agent started on this host has nothing to do to its kernel. */
const AGENT_NODE = 'helm-test-node';

/** Every toggle of values.yaml on, and every other knob away from its default. */
const ALL_ON = [
  'serviceMonitor.enabled=true',
  'serviceMonitor.labels.release=prom',
  'serviceMonitor.interval=15s',
  'podMonitor.enabled=true',
  'podMonitor.labels.release=prom',
  'prometheusRule.enabled=true',
  'prometheusRule.labels.release=prom',
  'grafanaDashboard.enabled=true',
  'grafanaDashboard.labels.team=net',
  'imagePullSecrets[0].name=registry',
  'serviceAccount.annotations.example\\.com/owner=net',
  'podAnnotations.example\\.com/note=x',
  'podLabels.tier=node',
  'nodeSelector.kubernetes\\.io/os=linux',
  'affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].key=kubernetes.io/arch',
  'affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].operator=In',
  'affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].values[0]=amd64',
  'maxUnavailable=10%',
  'logLevel=debug',
  'resyncPeriod=5m',
  'metrics.port=9555',
  'priorityClassName=',
  'image.tag=dev',
  'image.pullPolicy=Always',
  'resources.limits.cpu=500m',
].flatMap((v) => ['--set', v]);

/** The chart's alerts, in the order of the PrometheusRule. */
const ALERTS = [
  'IpipTunnelDown',
  'IpipOperatorReconcileErrors',
  'IpipOperatorAgentDown',
  'IpipOperatorAgentMissing',
  'IpipOperatorDriftCorrections',
];

type K8sObject = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [k: string]: any;
};

function objects(yamlText: string): K8sObject[] {
  return parseAllDocuments(yamlText)
    .map((d) => d.toJS() as K8sObject | null)
    .filter((o): o is K8sObject => o !== null);
}

function find(objs: K8sObject[], kind: string, name?: string): K8sObject {
  const o = objs.find((x) => x.kind === kind && (name === undefined || x.metadata.name === name));
  if (o === undefined)
    throw new Error(
      `no ${kind}${name === undefined ? '' : ` ${name}`} among: ${objs.map((x) => `${x.kind}/${x.metadata.name}`).join(', ')}`,
    );
  return o;
}

// Helm keeps repositories, a cache and (for the kube client) discovery data under these;
// a throwaway dir keeps the user's home out of it.
const helmHome = mkdtempSync(join(tmpdir(), 'ipip-helm-'));
onProcessExit(() => rmSync(helmHome, { recursive: true, force: true }));

/** Without a server: a kubeconfig that points nowhere, so nothing on this machine is used. */
function helm(args: string[], api?: ApiServer): Promise<KubectlResult> {
  return runHelm(args, { home: helmHome, api });
}

async function helmOk(args: string[], api?: ApiServer): Promise<string> {
  const r = await helm(args, api);
  assert.equal(r.code, 0, `helm ${args.join(' ')} exited ${r.code}:\n${r.stderr}`);
  return r.stdout;
}

interface AlertRule {
  alert: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations: Record<string, string>;
}

/** The alerting rules of the PrometheusRule that `helm template` renders with these --set values. */
async function alertRules(set: string[]): Promise<AlertRule[]> {
  const objs = objects(
    await helmOk([
      'template',
      RELEASE.name,
      chart,
      '--namespace',
      'monitoring',
      '--set',
      'prometheusRule.enabled=true',
      ...set,
    ]),
  );
  return find(objs, 'PrometheusRule').spec.groups.flatMap((g: { rules: AlertRule[] }) => g.rules);
}

/** `promtool check rules` on these rules, as one group; throws with its output when it fails. */
function promtoolCheckRules(rules: AlertRule[]): string {
  const dir = mkdtempSync(join(tmpdir(), 'ipip-rules-'));
  try {
    writeFileSync(join(dir, 'rules.yaml'), stringify({ groups: [{ name: 'ipip-operator', rules }] }));
    const check = spawnSync('promtool', ['check', 'rules', join(dir, 'rules.yaml')], { encoding: 'utf8' });
    if (check.error)
      throw new Error(`promtool is needed to test the alerts (apt-get install prometheus): ${check.error.message}`);
    assert.equal(check.status, 0, `promtool check rules:\n${check.stdout}${check.stderr}`);
    return check.stdout;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('the Helm chart and the plain manifests', () => {
  test("the chart's crds/ are byte copies of crds/ (IpipTunnel and IpipNode), no more, no fewer", () => {
    // Helm reads only files inside the chart, so the CRDs are copied in; crds/ stays the source.
    const files = readdirSync(join(REPO, 'crds')).sort();
    assert.deepEqual(files, ['ipipnodes.yaml', 'ipiptunnels.yaml']);
    assert.deepEqual(readdirSync(join(chart, 'crds')).sort(), files);
    for (const file of files) {
      const source = readFileSync(join(REPO, 'crds', file));
      const copy = readFileSync(join(chart, 'crds', file));
      assert.ok(
        source.equals(copy),
        `deploy/helm/ipip-operator/crds/${file} differs from crds/${file}: cp crds/*.yaml ` +
          'deploy/helm/ipip-operator/crds/ && scripts/render-manifests.sh',
      );
    }
  });

  test("Chart.yaml's appVersion (the default image tag) is package.json's version", () => {
    const pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string };
    const meta = parseYaml(readFileSync(join(chart, 'Chart.yaml'), 'utf8')) as { appVersion: string; name: string };
    assert.equal(meta.name, 'ipip-operator');
    assert.equal(meta.appVersion, pkg.version);
  });

  test('helm lint --strict passes, with default values and with every toggle on', async () => {
    await helmOk(['lint', chart, '--strict']);
    await helmOk(['lint', chart, '--strict', ...ALL_ON]);
  });

  test('deploy/manifests/ipip-operator.yaml is what scripts/render-manifests.sh renders now', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ipip-manifests-'));
    try {
      const fresh = join(dir, 'ipip-operator.yaml');
      const r = await run('bash', [join(REPO, 'scripts/render-manifests.sh'), fresh], { timeoutMs: 120_000 });
      assert.equal(r.code, 0, `scripts/render-manifests.sh failed:\n${r.stderr}`);
      assert.ok(
        readFileSync(fresh).equals(readFileSync(manifests)),
        'deploy/manifests/ is stale: run scripts/render-manifests.sh',
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('the rendered manifests: a Namespace, the CRDs, and the agent as the issue asks for it', () => {
    const objs = objects(readFileSync(manifests, 'utf8'));
    assert.deepEqual(
      objs.slice(0, 3).map((o) => o.kind),
      ['Namespace', 'CustomResourceDefinition', 'CustomResourceDefinition'],
      'the namespace and the CRDs come first, for kubectl apply',
    );
    assert.deepEqual(objs.map((o) => `${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`).sort(), [
      'ClusterRole//ipip-operator-agent',
      'ClusterRoleBinding//ipip-operator-agent',
      'CustomResourceDefinition//ipipnodes.tunnel.ipip-operator.dev',
      `CustomResourceDefinition//${crdName}`,
      'DaemonSet/ipip-operator/ipip-operator',
      'Namespace//ipip-operator',
      'Role/default/ipip-operator-agent-events',
      'Role/ipip-operator/ipip-operator-agent-lease',
      'RoleBinding/default/ipip-operator-agent-events',
      'RoleBinding/ipip-operator/ipip-operator-agent-lease',
      'ServiceAccount/ipip-operator/ipip-operator',
    ]);
    for (const o of objs.filter((x) => !['Namespace', 'CustomResourceDefinition'].includes(x.kind))) {
      for (const label of [
        'app.kubernetes.io/name',
        'app.kubernetes.io/instance',
        'app.kubernetes.io/version',
        'app.kubernetes.io/managed-by',
        'helm.sh/chart',
      ]) {
        assert.ok(o.metadata.labels?.[label], `${o.kind}/${o.metadata.name} has label ${label}`);
      }
    }

    const ds = find(objs, 'DaemonSet');
    const pod = ds.spec.template.spec;
    assert.equal(pod.hostNetwork, true);
    assert.equal(pod.dnsPolicy, 'ClusterFirstWithHostNet');
    assert.equal(pod.serviceAccountName, 'ipip-operator');
    assert.equal(pod.priorityClassName, 'system-node-critical');
    assert.deepEqual(pod.tolerations, [{ operator: 'Exists' }], 'every node, control planes included');
    assert.equal(pod.terminationGracePeriodSeconds, 30);
    assert.deepEqual(ds.spec.updateStrategy, { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 1 } });
    assert.deepEqual(ds.spec.selector.matchLabels, {
      'app.kubernetes.io/name': 'ipip-operator',
      'app.kubernetes.io/instance': 'ipip-operator',
    });
    const [c, ...others] = pod.containers;
    assert.equal(others.length, 0);
    assert.equal(c.image, 'ghcr.io/ipip-operator/ipip-operator:0.1.0');
    assert.equal(c.imagePullPolicy, 'IfNotPresent');
    assert.deepEqual(c.args, [
      'agent',
      '--log-format=json',
      '--log-level=info',
      '--resync-period=60s',
      '--metrics-address=127.0.0.1:9477',
    ]);
    assert.deepEqual(c.env, [
      { name: 'NODE_NAME', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } },
      { name: 'POD_NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
    ]);
    assert.deepEqual(c.ports, [{ name: 'metrics', containerPort: 9477, protocol: 'TCP' }]);
    // The metrics on the node's loopback only (metrics.bind: no monitor asks for them), and
    // the kubelet's probes sent there.
    assert.deepEqual(c.livenessProbe.httpGet, { host: '127.0.0.1', path: '/healthz', port: 'metrics' });
    assert.deepEqual(c.readinessProbe.httpGet, { host: '127.0.0.1', path: '/readyz', port: 'metrics' });
    assert.deepEqual(c.resources, {
      requests: { cpu: '20m', memory: '128Mi', 'ephemeral-storage': '64Mi' },
      limits: { memory: '256Mi', 'ephemeral-storage': '256Mi' },
    });
    assert.deepEqual(c.securityContext, {
      runAsUser: 0,
      runAsNonRoot: false,
      privileged: false,
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'], add: ['NET_ADMIN'] },
      seccompProfile: { type: 'RuntimeDefault' },
    });

    assert.equal(
      objs.some((o) => o.kind === 'Service'),
      false,
      'no Service for metrics nothing off the node can reach',
    );
  });

  test('metrics.bind: loopback unless asked; node with a ServiceMonitor or PodMonitor or when set; all when set; a monitor on loopback refused', async () => {
    const render = async (set: string[]) => {
      const objs = objects(await helmOk(['template', RELEASE.name, chart, ...set.flatMap((v) => ['--set', v])]));
      const c = find(objs, 'DaemonSet').spec.template.spec.containers[0];
      return {
        address: (c.args as string[]).find((a) => a.startsWith('--metrics-address=')),
        hostIp: (c.env as Array<{ name: string; valueFrom?: unknown }>).find((e) => e.name === 'HOST_IP'),
        probeHosts: [c.livenessProbe.httpGet.host, c.readinessProbe.httpGet.host],
        service: objs.find((o) => o.kind === 'Service'),
      };
    };
    const loopback = await render([]);
    assert.deepEqual(
      [loopback.address, loopback.hostIp, loopback.probeHosts, loopback.service],
      ['--metrics-address=127.0.0.1:9477', undefined, ['127.0.0.1', '127.0.0.1'], undefined],
    );
    assert.deepEqual(await render(['metrics.bind=loopback']), loopback);
    for (const set of [['metrics.bind=node'], ['serviceMonitor.enabled=true'], ['podMonitor.enabled=true']]) {
      const node = await render(set);
      // [IP]:PORT, which the agent reads for IPv4 and IPv6 alike; the kubelet expands $(HOST_IP).
      assert.equal(node.address, '--metrics-address=[$(HOST_IP)]:9477', set.join(' '));
      assert.deepEqual(node.hostIp, { name: 'HOST_IP', valueFrom: { fieldRef: { fieldPath: 'status.hostIP' } } });
      assert.deepEqual(
        node.probeHosts,
        [undefined, undefined],
        'probes go to the pod address, which is the node address',
      );
      assert.deepEqual(node.service?.spec.ports, [
        { name: 'metrics', port: 9477, targetPort: 'metrics', protocol: 'TCP' },
      ]);
      assert.equal(node.service?.spec.clusterIP, 'None');
    }
    const all = await render(['metrics.bind=all', 'metrics.port=9555']);
    assert.deepEqual(
      [all.address, all.hostIp, all.probeHosts, all.service?.spec.ports[0].port],
      ['--metrics-address=:9555', undefined, [undefined, undefined], 9555],
    );
    for (const monitor of ['serviceMonitor', 'podMonitor']) {
      const r = await helm([
        'template',
        RELEASE.name,
        chart,
        '--set',
        `${monitor}.enabled=true`,
        '--set',
        'metrics.bind=loopback',
      ]);
      assert.notEqual(r.code, 0, `${monitor} with the metrics on loopback was accepted`);
      assert.match(r.stderr, /needs metrics\.bind node or all: on loopback Prometheus cannot reach the agents/);
    }
    const wrong = await helm(['template', RELEASE.name, chart, '--set', 'metrics.bind=0.0.0.0']);
    assert.match(wrong.stderr, /at '\/metrics\/bind': value must be one of/);
  });

  test('every toggle on renders the ServiceMonitor, PodMonitor, PrometheusRule and dashboard ConfigMap, and the knobs reach the DaemonSet', async () => {
    const objs = objects(await helmOk(['template', RELEASE.name, chart, '--namespace', 'monitoring', ...ALL_ON]));
    const sm = find(objs, 'ServiceMonitor');
    assert.equal(sm.metadata.labels?.release, 'prom');
    assert.deepEqual(
      sm.spec.endpoints.map((e: { port: string; interval: string }) => [e.port, e.interval]),
      [['metrics', '15s']],
    );
    assert.deepEqual(sm.spec.selector.matchLabels, find(objs, 'Service').spec.selector);
    const pm = find(objs, 'PodMonitor');
    assert.deepEqual(
      pm.spec.podMetricsEndpoints.map((e: { port: string }) => e.port),
      ['metrics'],
    );
    assert.deepEqual(pm.spec.selector.matchLabels, find(objs, 'DaemonSet').spec.selector.matchLabels);
    const rule = find(objs, 'PrometheusRule');
    assert.deepEqual(
      rule.spec.groups[0].rules.map((r: { alert: string }) => r.alert),
      ALERTS,
    );
    const cm = find(objs, 'ConfigMap');
    assert.equal(cm.metadata.labels?.grafana_dashboard, '1', 'the label the Grafana sidecar looks for');
    assert.equal(cm.metadata.labels?.team, 'net');
    const dashboard = JSON.parse(cm.data['ipip-operator.json']) as { panels?: unknown[] };
    assert.deepEqual(
      dashboard,
      JSON.parse(readFileSync(join(chart, 'dashboards/ipip-operator.json'), 'utf8')),
      "the ConfigMap holds the chart's dashboard as it is",
    );

    const ds = find(objs, 'DaemonSet');
    const pod = ds.spec.template.spec;
    const c = pod.containers[0];
    assert.equal(c.image, 'ghcr.io/ipip-operator/ipip-operator:dev');
    assert.equal(c.imagePullPolicy, 'Always');
    assert.deepEqual(c.args, [
      'agent',
      '--log-format=json',
      '--log-level=debug',
      '--resync-period=5m',
      '--metrics-address=[$(HOST_IP)]:9555',
    ]);
    assert.equal(c.ports[0].containerPort, 9555);
    assert.equal(find(objs, 'Service').spec.ports[0].port, 9555);
    assert.deepEqual(c.resources.limits, { cpu: '500m', memory: '256Mi', 'ephemeral-storage': '256Mi' });
    assert.equal(ds.spec.updateStrategy.rollingUpdate.maxUnavailable, '10%');
    assert.equal(pod.priorityClassName, undefined, 'an empty priorityClassName leaves it out');
    assert.deepEqual(pod.imagePullSecrets, [{ name: 'registry' }]);
    assert.deepEqual(pod.nodeSelector, { 'kubernetes.io/os': 'linux' });
    assert.equal(
      pod.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0]
        .key,
      'kubernetes.io/arch',
    );
    assert.equal(ds.spec.template.metadata.labels.tier, 'node');
    assert.equal(ds.spec.template.metadata.annotations['example.com/note'], 'x');
    assert.equal(find(objs, 'ServiceAccount').metadata.annotations?.['example.com/owner'], 'net');
  });

  test("every alert has a for, a severity and a runbook_url to its page in docs/runbooks/; every page is an alert's", async () => {
    const rules = await alertRules([]);
    assert.deepEqual(
      rules.map((r) => r.alert),
      ALERTS,
    );
    assert.match(promtoolCheckRules(rules), new RegExp(`SUCCESS: ${ALERTS.length} rules found`));
    const index = readFileSync(join(REPO, 'docs/runbooks/README.md'), 'utf8');
    for (const r of rules) {
      assert.match(r.for ?? '', /^([0-9]+(ms|s|m|h|d|w|y))+$/, `${r.alert} has a for`);
      assert.doesNotMatch(r.for!, /^(0+[a-z]+)+$/, `${r.alert}: a for of more than nothing`);
      assert.match(r.labels?.severity ?? '', /^(critical|warning|info)$/, `${r.alert} has a severity`);
      assert.ok(r.annotations.summary && r.annotations.description, `${r.alert} has a summary and a description`);
      assert.equal(r.annotations.runbook_url, `${RUNBOOKS}/${r.alert}.md`);
      const page = join(REPO, 'docs/runbooks', `${r.alert}.md`);
      assert.ok(existsSync(page), `docs/runbooks/${r.alert}.md exists`);
      const text = readFileSync(page, 'utf8');
      assert.match(text, new RegExp(`^# ${r.alert}\n`), `${r.alert}.md is its page`);
      for (const section of ['Meaning', 'Impact', 'Diagnosis', 'Mitigation'])
        assert.match(text, new RegExp(`^## ${section}$`, 'm'), `${r.alert}.md has a section ${section}`);
      // The page states the chart's defaults: its severity and its for.
      assert.match(
        text,
        new RegExp(`^Severity \`${r.labels!.severity}\` by default\\.`, 'm'),
        `${r.alert}.md: its severity`,
      );
      assert.ok(
        text.replace(/\s+/g, ' ').includes(`for ${r.for} (\`prometheusRule.alerts.${r.alert}\`)`),
        `${r.alert}.md: its for`,
      );
      assert.ok(index.includes(`[${r.alert}](${r.alert}.md)`), `docs/runbooks/README.md links ${r.alert}.md`);
    }
    const pages = readdirSync(join(REPO, 'docs/runbooks'))
      .filter((f) => f !== 'README.md')
      .map((f) => f.replace(/\.md$/, ''));
    assert.deepEqual(
      pages.sort(),
      [...ALERTS].sort(),
      'a page per alert, and none for an alert the chart does not have',
    );
  });

  test('prometheusRule.alerts turns each alert off, or tunes its for and severity; with every alert off there is no PrometheusRule', async () => {
    for (const name of ALERTS) {
      const rules = await alertRules(['--set', `prometheusRule.alerts.${name}.enabled=false`]);
      assert.deepEqual(
        rules.map((r) => r.alert),
        ALERTS.filter((n) => n !== name),
        `${name} off`,
      );
    }
    const tuned = await alertRules([
      '--set',
      'prometheusRule.alerts.IpipTunnelDown.for=2m',
      '--set',
      'prometheusRule.alerts.IpipTunnelDown.severity=page',
      '--set',
      'prometheusRule.alerts.IpipOperatorAgentMissing.for=1h30m',
      '--set',
      'prometheusRule.runbookUrl=https://wiki.example.com/ipip/',
    ]);
    promtoolCheckRules(tuned);
    const rule = (name: string) => tuned.find((r) => r.alert === name)!;
    assert.deepEqual([rule('IpipTunnelDown').for, rule('IpipTunnelDown').labels?.severity], ['2m', 'page']);
    assert.match(rule('IpipTunnelDown').annotations.description!, / for 2m\. /, 'the description says the for');
    assert.equal(rule('IpipOperatorAgentMissing').for, '1h30m');
    assert.deepEqual(
      [rule('IpipOperatorAgentDown').for, rule('IpipOperatorAgentDown').labels?.severity],
      ['5m', 'warning'],
      'the others keep their defaults',
    );
    assert.equal(rule('IpipTunnelDown').annotations.runbook_url, 'https://wiki.example.com/ipip/IpipTunnelDown.md');

    const allOff = objects(
      await helmOk([
        'template',
        RELEASE.name,
        chart,
        '--set',
        'prometheusRule.enabled=true',
        ...ALERTS.flatMap((n) => ['--set', `prometheusRule.alerts.${n}.enabled=false`]),
      ]),
    );
    assert.equal(
      allOff.some((o) => o.kind === 'PrometheusRule'),
      false,
      'no PrometheusRule without rules',
    );

    const refused: Array<[string, RegExp]> = [
      [
        'prometheusRule.alerts.IpipTunelDown.enabled=false',
        /at '\/prometheusRule\/alerts': additional properties 'IpipTunelDown' not allowed/,
      ],
      ['prometheusRule.alerts.IpipTunnelDown.for=5 minutes', /at '\/prometheusRule\/alerts\/IpipTunnelDown\/for'/],
      ['prometheusRule.alerts.IpipTunnelDown.enabled=maybe', /at '\/prometheusRule\/alerts\/IpipTunnelDown\/enabled'/],
      ['prometheusRule.runbookUrl=docs/runbooks', /at '\/prometheusRule\/runbookUrl'/],
    ];
    for (const [value, message] of refused) {
      const r = await helm(['template', RELEASE.name, chart, '--set', 'prometheusRule.enabled=true', '--set', value]);
      assert.notEqual(r.code, 0, `--set ${value} was accepted`);
      assert.match(r.stderr, message);
    }
  });

  test('the alerts fire on the series they are for, and only then (promtool test rules)', async () => {
    const objs = objects(
      await helmOk([
        'template',
        RELEASE.name,
        chart,
        '--namespace',
        'monitoring',
        '--set',
        'prometheusRule.enabled=true',
      ]),
    );
    const rule = find(objs, 'PrometheusRule');
    const dir = mkdtempSync(join(tmpdir(), 'ipip-rules-'));
    try {
      writeFileSync(join(dir, 'rules.yaml'), stringify({ groups: rule.spec.groups }));
      // job as the ServiceMonitor names it (the Service) and as the PodMonitor does (namespace/name).
      const a = 'job="ipip-operator",instance="192.168.40.2:9477"';
      const b = 'job="monitoring/ipip-operator",instance="192.168.40.3:9477"';
      const alert = (name: string, labels: Record<string, string>, annotations: Record<string, string>) => ({
        exp_labels: labels,
        exp_annotations: { ...annotations, runbook_url: `${RUNBOOKS}/${name}.md` },
      });
      const tests = {
        rule_files: ['rules.yaml'],
        evaluation_interval: '1m',
        tests: [
          {
            interval: '1m',
            input_series: [
              { series: `ipip_operator_tunnel_up{${a},tunnel="lab",link="ipiptun"}`, values: '0x20' },
              { series: `ipip_operator_tunnel_up{${b},tunnel="lab",link="ipiptun"}`, values: '1x20' },
              // One failed pass at minute 5 on a, which the retry fixed; on b a pass fails
              // every 5 minutes from minute 2 (the backoff's cap): an error that stays.
              { series: `ipip_operator_reconcile_total{${a},result="error"}`, values: '0x4 1x25' },
              { series: `ipip_operator_reconcile_total{${b},result="error"}`, values: '0 0 1x4 2x4 3x4 4x4 5x4 6x4' },
              { series: `up{${a}}`, values: '1x20' },
              { series: `up{${b}}`, values: '0x20' },
            ],
            alert_rule_test: [
              { eval_time: '4m', alertname: 'IpipTunnelDown', exp_alerts: [] },
              {
                eval_time: '6m',
                alertname: 'IpipTunnelDown',
                exp_alerts: [
                  alert(
                    'IpipTunnelDown',
                    {
                      severity: 'critical',
                      job: 'ipip-operator',
                      instance: '192.168.40.2:9477',
                      tunnel: 'lab',
                      link: 'ipiptun',
                    },
                    {
                      summary: 'IPIP tunnel lab is down on 192.168.40.2:9477',
                      description:
                        'Link ipiptun of IpipTunnel lab has not been up on 192.168.40.2:9477 for 5m. See the ' +
                        "tunnel's conditions and Events (kubectl describe ipt lab) and that node's agent log.",
                    },
                  ),
                ],
              },
              // a's one error never fires (it is in the window for 10 minutes, not the 15 of
              // `for`); b's errors, pending from minute 2, fire at minute 17.
              { eval_time: '10m', alertname: 'IpipOperatorReconcileErrors', exp_alerts: [] },
              { eval_time: '16m', alertname: 'IpipOperatorReconcileErrors', exp_alerts: [] },
              {
                eval_time: '18m',
                alertname: 'IpipOperatorReconcileErrors',
                exp_alerts: [
                  alert(
                    'IpipOperatorReconcileErrors',
                    {
                      severity: 'warning',
                      job: 'monitoring/ipip-operator',
                      instance: '192.168.40.3:9477',
                      result: 'error',
                    },
                    {
                      summary: 'ipip-operator reconciles keep failing on 192.168.40.3:9477',
                      description:
                        'Reconcile passes have failed on 192.168.40.3:9477 for 15m, 2 in the last 10 minutes. The agent ' +
                        "retries with backoff; its log names the command and the kernel's answer.",
                    },
                  ),
                ],
              },
              { eval_time: '4m', alertname: 'IpipOperatorAgentDown', exp_alerts: [] },
              {
                eval_time: '6m',
                alertname: 'IpipOperatorAgentDown',
                exp_alerts: [
                  alert(
                    'IpipOperatorAgentDown',
                    { severity: 'warning', job: 'monitoring/ipip-operator', instance: '192.168.40.3:9477' },
                    {
                      summary: 'ipip-operator agent on 192.168.40.3:9477 is down',
                      description:
                        'Prometheus has not scraped the agent at 192.168.40.3:9477 for 5m. Tunnels on that node ' +
                        'stay as they are, but nothing repairs or changes them.',
                    },
                  ),
                ],
              },
              // One agent of two is up: not missing.
              { eval_time: '15m', alertname: 'IpipOperatorAgentMissing', exp_alerts: [] },
            ],
          },
          {
            interval: '1m',
            input_series: [
              { series: `up{${a}}`, values: '0x20' },
              { series: `up{${b}}`, values: '0x20' },
              // Someone else's target being up does not count.
              { series: 'up{job="node-exporter",instance="192.168.40.2:9100"}', values: '1x20' },
              // a: something undoes the agent's work every minute; b: a few repairs, then quiet.
              { series: `ipip_operator_drift_corrections_total{${a}}`, values: '0+1x70' },
              { series: `ipip_operator_drift_corrections_total{${b}}`, values: '0 1 2 3 3x67' },
            ],
            alert_rule_test: [
              { eval_time: '9m', alertname: 'IpipOperatorAgentMissing', exp_alerts: [] },
              {
                eval_time: '11m',
                alertname: 'IpipOperatorAgentMissing',
                exp_alerts: [
                  alert(
                    'IpipOperatorAgentMissing',
                    { severity: 'critical' },
                    {
                      summary: 'No ipip-operator agent is up',
                      description:
                        'No agent of the DaemonSet monitoring/ipip-operator has been scraped successfully for 10m. ' +
                        'Tunnels stay as they are, but nothing repairs or changes them.',
                    },
                  ),
                ],
              },
              // Over 10 in the last hour from minute 11 on a: pending for the 15m of `for`.
              { eval_time: '20m', alertname: 'IpipOperatorDriftCorrections', exp_alerts: [] },
              {
                eval_time: '65m',
                alertname: 'IpipOperatorDriftCorrections',
                exp_alerts: [
                  alert(
                    'IpipOperatorDriftCorrections',
                    { severity: 'info', job: 'ipip-operator', instance: '192.168.40.2:9477' },
                    {
                      summary: 'ipip-operator keeps repairing drift on 192.168.40.2:9477',
                      description:
                        'The agent on 192.168.40.2:9477 undid 60 changes made by someone else to its links, addresses ' +
                        'or routes in the last hour. Something on that node fights over them.',
                    },
                  ),
                ],
              },
            ],
          },
        ],
      };
      writeFileSync(join(dir, 'tests.yaml'), stringify(tests));
      const check = spawnSync('promtool', ['check', 'rules', join(dir, 'rules.yaml')], { encoding: 'utf8' });
      if (check.error)
        throw new Error(`promtool is needed to test the alerts (apt-get install prometheus): ${check.error.message}`);
      assert.equal(check.status, 0, `promtool check rules:\n${check.stdout}${check.stderr}`);
      const t = spawnSync('promtool', ['test', 'rules', 'tests.yaml'], { cwd: dir, encoding: 'utf8' });
      assert.equal(t.status, 0, `promtool test rules:\n${t.stdout}${t.stderr}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("as a subchart: the schema takes an umbrella chart's enabled (its condition) and global, and refuses a misspelt value", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ipip-umbrella-'));
    try {
      const umbrella = join(dir, 'platform');
      mkdirSync(join(umbrella, 'charts'), { recursive: true });
      cpSync(chart, join(umbrella, 'charts/ipip-operator'), { recursive: true });
      const meta = parseYaml(readFileSync(join(chart, 'Chart.yaml'), 'utf8')) as { version: string };
      writeFileSync(
        join(umbrella, 'Chart.yaml'),
        stringify({
          apiVersion: 'v2',
          name: 'platform',
          version: '1.0.0',
          dependencies: [{ name: 'ipip-operator', version: meta.version, condition: 'ipip-operator.enabled' }],
        }),
      );
      // As kube-prometheus-stack-like parents have it: globals for every subchart, and the
      // subchart's block with its enabled switch.
      writeFileSync(
        join(umbrella, 'values.yaml'),
        stringify({
          global: { imageRegistry: 'registry.example.com', imagePullSecrets: [] },
          'ipip-operator': { enabled: true, logLevel: 'debug' },
        }),
      );
      const on = objects(await helmOk(['template', 'platform', umbrella, '--namespace', 'net']));
      assert.ok(find(on, 'DaemonSet').spec.template.spec.containers[0].args.includes('--log-level=debug'));
      const off = objects(
        await helmOk(['template', 'platform', umbrella, '--namespace', 'net', '--set', 'ipip-operator.enabled=false']),
      );
      assert.deepEqual(off, [], 'the condition turns the whole subchart off');
      // The chart on its own takes them too (and ignores them); a misspelt value is refused.
      await helmOk(['lint', chart, '--strict', '--set', 'enabled=true', '--set', 'global.imageRegistry=x']);
      const misspelt = await helm(['template', RELEASE.name, chart, '--set', 'enabeld=true']);
      assert.notEqual(misspelt.code, 0);
      assert.match(misspelt.stderr, /additional properties 'enabeld' not allowed/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("the README's values table lists every value of values.yaml with its default", () => {
    const values = parseYaml(readFileSync(join(chart, 'values.yaml'), 'utf8')) as Record<string, unknown>;
    const leaves: Record<string, unknown> = {};
    // A non-empty map is walked into (resources.requests.cpu); an empty one, a list or a
    // scalar is one value (nodeSelector, tolerations, logLevel).
    const walk = (prefix: string, v: unknown) => {
      if (v !== null && typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length > 0) {
        for (const [k, x] of Object.entries(v)) walk(prefix === '' ? k : `${prefix}.${k}`, x);
      } else {
        leaves[prefix] = v;
      }
    };
    walk('', values);
    const readme = readFileSync(join(REPO, 'README.md'), 'utf8');
    const section = readme
      .split(/^### /m)
      .find((s) => s.startsWith('Values'))
      ?.split(/^## /m)[0];
    assert.ok(section, 'README.md has a "### Values" section');
    const documented: Record<string, unknown> = {};
    for (const row of section.split('\n').filter((l) => /^\|\s*`/.test(l))) {
      const [key, def] = row
        .split('|')
        .slice(1, 3)
        .map((c) => c.trim().replace(/^`|`$/g, ''));
      documented[key!] = parseYaml(def!);
    }
    assert.deepEqual(documented, leaves);
  });
});

describe('the chart on a real API server', { timeout: 600_000 }, () => {
  const api = new StartedByTest<ApiServer>('API server');
  const server = (): ApiServer => api.get();
  let agent: ChildProcess | undefined;

  after(async () => {
    if (agent !== undefined && agent.exitCode === null && agent.signalCode === null) agent.kill('SIGKILL');
    await api.started?.stop();
  });

  const kubectl = (args: string[], input?: string): Promise<string> => kubectlOk(server(), args, input);

  async function exists(args: string[]): Promise<boolean> {
    const r = await server().kubectl(['get', ...args, '-o', 'name']);
    if (r.code === 0) return true;
    if (/NotFound|not found/.test(r.stderr)) return false;
    throw new Error(`kubectl get ${args.join(' ')}: ${r.stderr}`);
  }

  const eventually = <T>(what: string, check: () => Promise<T | undefined>): Promise<T> =>
    waitUntil(what, check, { timeoutMs: 30_000, intervalMs: 250 });

  /** What the release owns on the server, as "Kind/namespace/name". */
  const releaseObjects = [
    ['serviceaccount', RELEASE.namespace, 'ipip-operator'],
    ['clusterrole', '', 'ipip-operator-agent'],
    ['clusterrolebinding', '', 'ipip-operator-agent'],
    ['role', 'default', 'ipip-operator-agent-events'],
    ['rolebinding', 'default', 'ipip-operator-agent-events'],
    ['role', RELEASE.namespace, 'ipip-operator-agent-lease'],
    ['rolebinding', RELEASE.namespace, 'ipip-operator-agent-lease'],
    ['daemonset', RELEASE.namespace, 'ipip-operator'],
  ] as const;
  const getArgs = ([kind, ns, name]: readonly [string, string, string]) => [
    kind,
    name,
    ...(ns === '' ? [] : ['-n', ns]),
  ];

  test('kube-apiserver starts', async () => {
    await api.start(() => startApiServer());
  });

  test('the rendered objects with default values are accepted (kubectl apply --dry-run=server)', async () => {
    // The namespaced objects need their namespace to exist, even for a dry run.
    await kubectl(['create', 'namespace', 'dry-default']);
    const rendered = await helmOk(
      ['template', RELEASE.name, chart, '--namespace', 'dry-default', '--include-crds'],
      server(),
    );
    const out = await kubectl(['apply', '--dry-run=server', '-f', '-'], rendered);
    assert.match(out, /daemonset\.apps\/ipip-operator created \(server dry run\)/);
    assert.match(
      out,
      /customresourcedefinition\.apiextensions\.k8s\.io\/ipiptunnels\.tunnel\.ipip-operator\.dev created \(server dry run\)/,
    );
  });

  test('deploy/manifests/ipip-operator.yaml is accepted as a whole (its own namespace first)', async () => {
    // The dry run cannot create the Namespace the rest of the file lives in, so that one is real.
    await kubectl(['create', 'namespace', 'ipip-operator']);
    const out = await kubectl(['apply', '--dry-run=server', '-f', manifests]);
    assert.equal(out.trim().split('\n').length, objects(readFileSync(manifests, 'utf8')).length, out);
  });

  test("with every toggle on, against monitoring CRDs standing in for prometheus-operator's, the rendered objects are accepted", async () => {
    await kubectl(['apply', '-f', join(REPO, 'test/cluster/fixtures/monitoring-crds.yaml')]);
    for (const crd of ['servicemonitors', 'podmonitors', 'prometheusrules']) {
      await kubectl(['wait', '--for=condition=Established', `crd/${crd}.monitoring.coreos.com`, '--timeout=60s']);
    }
    await kubectl(['create', 'namespace', 'dry-all']);
    const rendered = await helmOk(
      ['template', RELEASE.name, chart, '--namespace', 'dry-all', '--include-crds', ...ALL_ON],
      server(),
    );
    const out = await kubectl(['apply', '--dry-run=server', '-f', '-'], rendered);
    for (const kind of [
      'servicemonitor.monitoring.coreos.com',
      'podmonitor.monitoring.coreos.com',
      'prometheusrule.monitoring.coreos.com',
      'configmap',
    ]) {
      assert.match(
        out,
        new RegExp(`^${kind.replace(/\./g, '\\.')}/ipip-operator(-dashboard)? created \\(server dry run\\)$`, 'm'),
      );
    }
  });

  test("a wrong value fails helm install with the schema's message naming it; only the CRD is created", async () => {
    const cases: Array<[string, RegExp]> = [
      ['metrics.port=abc', /at '\/metrics\/port': got string, want integer/],
      ['tolerations=notalist', /at '\/tolerations': got string, want array/],
      ['resources.limits=abc', /at '\/resources\/limits': got string, want object/],
    ];
    for (const [value, message] of cases) {
      const r = await helm(
        ['install', 'wrong', chart, '--namespace', 'wrong', '--create-namespace', '--set', value],
        server(),
      );
      assert.notEqual(r.code, 0, `--set ${value} was accepted`);
      assert.match(r.stderr, /values don't meet the specifications of the schema/, r.stderr);
      assert.match(r.stderr, message);
    }
    assert.equal((await helmOk(['list', '--all-namespaces', '--all', '-q'], server())).trim(), '', 'no release');
    for (const [kind, , name] of releaseObjects) {
      assert.equal(await exists([kind, name, '-n', 'wrong']), false, `no ${kind} ${name}`);
    }
    // Helm (3.22, pkg/action/install.go) installs a chart's crds/ BEFORE it checks the
    // values against the schema, so the CRD is there after the failed install. Harmless
    // (the next install finds it and goes on), but not "nothing": the README says so.
    assert.equal(await exists(['crd', crdName]), true);
  });

  test('helm install creates the CRD, ServiceAccount, RBAC and DaemonSet (no Service: metrics on loopback); NOTES say what next', async () => {
    const out = await helmOk(
      ['install', RELEASE.name, chart, '--namespace', RELEASE.namespace, '--create-namespace'],
      server(),
    );
    assert.match(out, /STATUS: deployed/);
    assert.match(out, /kubectl apply -f tunnel\.yaml/);
    assert.match(out, /kubectl get ipt/);
    assert.match(out, /\/metrics on 127\.0\.0\.1, port 9477, of its node only/);
    assert.match(out, /set\s+serviceMonitor\.enabled=true \(or podMonitor\.enabled=true\)/);
    await kubectl(['wait', '--for=condition=Established', `crd/${crdName}`, '--timeout=60s']);
    assert.equal(await exists(['service', 'ipip-operator', '-n', RELEASE.namespace]), false);
    for (const o of releaseObjects) {
      const got = JSON.parse(await kubectl([...['get', ...getArgs(o)], '-o', 'json'])) as K8sObject;
      assert.equal(
        got.metadata.labels?.['app.kubernetes.io/managed-by'],
        'Helm',
        `${o.join('/')} belongs to the release`,
      );
      assert.equal(got.metadata.annotations?.['meta.helm.sh/release-name'], RELEASE.name);
    }
  });

  test("the agent runs as the chart's ServiceAccount: it gets ready, takes the Lease, writes status, and is refused nothing", async () => {
    // The example names node-a and node-b, not this agent's node: the Lease holder still
    // writes its aggregate status (0/2 ready), which exercises the status patch rule.
    await kubectl(['apply', '-f', join(REPO, 'examples/tunnel.yaml')]);
    await kubectl(
      ['apply', '-f', '-'],
      JSON.stringify({ apiVersion: 'v1', kind: 'Node', metadata: { name: AGENT_NODE } }),
    );
    const token = (
      await kubectl(['create', 'token', 'ipip-operator', '-n', RELEASE.namespace, '--duration=1h'])
    ).trim();
    const kubeconfig = join(server().dir, 'agent.kubeconfig');
    writeFileSync(kubeconfig, kubeconfigYaml(server().server, readFileSync(server().caFile), token, 'ipip-operator'), {
      mode: 0o600,
    });

    // The agent's arguments as the chart gives them with the metrics on the node's address
    // (metrics.bind=node), $(HOST_IP) expanded as the kubelet would (and port 0: any free
    // one), then what the pod's environment would give it; a later flag wins.
    const rendered = objects(
      await helmOk(['template', RELEASE.name, chart, '--namespace', RELEASE.namespace, '--set', 'metrics.bind=node']),
    );
    const chartArgs = (find(rendered, 'DaemonSet').spec.template.spec.containers[0].args as string[]).map((a) =>
      a.replace('$(HOST_IP)', '127.0.0.1').replace(/:9477$/, ':0'),
    );
    assert.equal(chartArgs[0], 'agent');
    assert.ok(chartArgs.includes('--metrics-address=[127.0.0.1]:0'), chartArgs.join(' '));
    let log = '';
    const [cmd, argv] = withPdeathsig(process.execPath, [
      join(REPO, 'src/cli/main.ts'),
      ...chartArgs,
      '--node-name',
      AGENT_NODE,
      '--kubeconfig',
      kubeconfig,
      '--lease-namespace',
      RELEASE.namespace,
      '--resync-period',
      '2s',
    ]);
    // No KUBECONFIG or POD_NAMESPACE from this environment: only the flags count.
    const { KUBECONFIG: _k, POD_NAMESPACE: _p, NODE_NAME: _n, ...env } = process.env;
    const child = spawn(cmd, argv, { cwd: REPO, env, stdio: ['ignore', 'pipe', 'pipe'] });
    agent = child;
    child.stdout!.setEncoding('utf8').on('data', (c: string) => (log += c));
    child.stderr!.setEncoding('utf8').on('data', (c: string) => (log += c));
    const exited = new Promise<number | null>((res) => child.once('exit', (code) => res(code)));
    try {
      const port = await eventually("the agent's http server", async () => {
        if (child.exitCode !== null) throw new GiveUp(new Error(`the agent exited ${child.exitCode}:\n${log}`));
        for (const line of log.split('\n')) {
          if (!line.startsWith('{')) continue;
          const entry = JSON.parse(line) as { message?: string; port?: number };
          if (entry.message === 'http server listening') return entry.port;
        }
        return undefined;
      });
      const base = `http://127.0.0.1:${port}`;
      await eventually('/readyz 200', async () => ((await fetch(`${base}/readyz`)).status === 200 ? true : undefined));

      const holder = await eventually('the Lease held by the agent', async () => {
        const r = await server().kubectl([
          'get',
          'lease',
          'ipip-operator-status',
          '-n',
          RELEASE.namespace,
          '-o',
          'jsonpath={.spec.holderIdentity}',
        ]);
        return r.code === 0 && r.stdout !== '' ? r.stdout : undefined;
      });
      assert.equal(holder, AGENT_NODE);
      const status = await eventually('the aggregate status of lab', async () => {
        const t = JSON.parse(await kubectl(['get', 'ipt', 'lab', '-o', 'json'])) as {
          status?: { readySummary?: string };
        };
        return t.status?.readySummary;
      });
      assert.equal(status, '0/2');

      const metrics = await (await fetch(`${base}/metrics`)).text();
      assert.match(metrics, /^ipip_operator_status_leader 1$/m);
      const changes = metrics.split('\n').filter((l) => l.startsWith('ipip_operator_dataplane_changes_total{'));
      assert.ok(changes.length > 0);
      assert.deepEqual(
        changes.filter((l) => !l.endsWith(' 0')),
        [],
        "it changed nothing in this host's kernel",
      );
    } finally {
      child.kill('SIGTERM');
    }
    assert.equal(await exited, 0, `the agent's exit code after SIGTERM\n${log}`);
    assert.doesNotMatch(log, /forbidden|\b403\b/i, `the agent was refused something:\n${log}`);
    assert.doesNotMatch(log, /"level":"error"/, `the agent logged an error:\n${log}`);
  });

  test('helm upgrade leaves the CRD as it is (crds/ is install-only): kubectl apply -f crds/ is the way', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ipip-chart-'));
    try {
      // The chart with a changed CRD (a new label), as a new release of it would bring.
      cpSync(chart, join(dir, 'ipip-operator'), { recursive: true });
      const crdFile = join(dir, 'ipip-operator/crds/ipiptunnels.yaml');
      writeFileSync(crdFile, readFileSync(crdFile, 'utf8').replace('  labels:\n', '  labels:\n    upgraded: "yes"\n'));
      const out = await helmOk(
        ['upgrade', RELEASE.name, join(dir, 'ipip-operator'), '--namespace', RELEASE.namespace],
        server(),
      );
      assert.match(out, /REVISION: 2/);
      const label = async () =>
        (await kubectl(['get', 'crd', crdName, '-o', 'jsonpath={.metadata.labels.upgraded}'])).trim();
      assert.equal(await label(), '', 'helm upgrade did not touch the CRD');
      await kubectl(['apply', '-f', crdFile]);
      assert.equal(await label(), 'yes');
      await kubectl(['apply', '-f', join(REPO, 'crds/ipiptunnels.yaml')]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('helm uninstall removes the agent and its RBAC; the CRD and the IpipTunnels stay', async () => {
    await helmOk(['uninstall', RELEASE.name, '--namespace', RELEASE.namespace], server());
    for (const o of releaseObjects) assert.equal(await exists(getArgs(o)), false, `${o.join('/')} is gone`);
    // Helm never deletes what it installed from crds/: the CRD, and with it every tunnel's
    // object, stay. (Agents are gone, so nothing would change the kernels either way.)
    assert.equal(await exists(['crd', crdName]), true, 'the CRD stays');
    assert.equal(await exists(['ipiptunnel', 'lab']), true, 'the IpipTunnels stay');
    // Not the release's: the namespace (--create-namespace) and the Lease the agent made.
    assert.equal(await exists(['namespace', RELEASE.namespace]), true);
    assert.equal(await exists(['lease', 'ipip-operator-status', '-n', RELEASE.namespace]), true);
    assert.equal((await helmOk(['list', '--all-namespaces', '--all', '-q'], server())).trim(), '');
  });
});
