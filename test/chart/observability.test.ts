// The chart's Prometheus and Grafana resources: ServiceMonitor, PodMonitor, PrometheusRule and the dashboard
// ConfigMap. There is no schema for monitoring.coreos.com here, so their fields are checked by hand; every
// metric a dashboard query or an alert names must be one that services/core/src/metrics.ts exports.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { stringify } from 'yaml';
import { ROOT } from '../support/processes.ts';
import { CHART, helm, installNotes, type Manifest, NAMESPACE, pick, podSpecOf, render, template, VALUES_FILES } from './helm.ts';
import { builtInProblems } from './kubernetes-schemas.ts';
import { selects } from './network-policy.ts';
import { analyse, availableLabels, type Exported, exportedSeries, legendLabels, withoutGrafanaIntervals } from './promql.ts';

const test = suite('chart: metrics monitors, dashboard and alerts');

const external = ['connections.databaseUrl=postgres://u:p@db:5432/conveyor', 'connections.amqpUrl=amqp://u:p@mq:5672'];
const everything = ['metrics.serviceMonitor.enabled=true', 'metrics.podMonitor.enabled=true', 'metrics.dashboard.enabled=true', 'metrics.prometheusRule.enabled=true'];
const dashboardFile = join(CHART, 'dashboards', 'conveyor.json');
const ALERTS = [
  'ConveyorBacklogGrowingAtMaxReplicas',
  'ConveyorOldestPendingTaskTooOld',
  'ConveyorTaskFailureRatioHigh',
  'ConveyorBrokerDown',
  'ConveyorNoControllerLeader',
  'ConveyorDatabaseDown',
];
const DURATION = /^([0-9]+(ms|s|m|h|d|w|y))+$/;

let exported = new Map<string, Exported>();
let manifests: Manifest[] = [];

type Rule = { alert: string; expr: string; for: string; labels: Record<string, string>; annotations: Record<string, string> };
type Target = { expr: string; legendFormat?: string; refId: string; datasource?: { type: string; uid: string } };
type Panel = { id: number; type: string; title: string; gridPos: { x: number; y: number; w: number; h: number }; datasource?: { type: string; uid: string }; targets?: Target[] };

const rulesOf = (manifest: Manifest): Rule[] => (manifest['spec'].groups as { rules: Rule[] }[]).flatMap((group) => group.rules);
const alertNames = (rendered: Manifest[]) => rulesOf(pick(rendered, 'PrometheusRule', 'conveyor')).map((rule) => rule.alert);
const expressionOf = (rendered: Manifest[], alert: string) => (rulesOf(pick(rendered, 'PrometheusRule', 'conveyor')).find((rule) => rule.alert === alert) as Rule).expr;
const dashboard = () => JSON.parse(readFileSync(dashboardFile, 'utf8')) as { uid: string; title: string; panels: Panel[]; templating: { list: any[] } };
const queryPanels = () => dashboard().panels.filter((panel) => panel.type !== 'row');

test.before(async () => {
  exported = await exportedSeries();
  manifests = await render([VALUES_FILES.default], everything);
});

test('the exported series are read from the real registries: histograms as _bucket/_sum/_count, process defaults prefixed', () => {
  for (const name of ['conveyor_tasks_submitted_total', 'conveyor_tasks', 'conveyor_outbox_pending_tasks', 'conveyor_backlog_tasks', 'conveyor_controller_leader', 'conveyor_process_cpu_seconds_total', 'conveyor_nodejs_eventloop_lag_p99_seconds']) {
    assert.ok(exported.has(name), name);
  }
  assert.equal(['_bucket', '_sum', '_count'].map((suffix) => exported.get(`conveyor_task_wait_seconds${suffix}`)?.kind), ['histogram', 'histogram', 'histogram']);
  assert.not.ok(exported.has('conveyor_task_wait_seconds'), 'a histogram has no series under its bare name');
  assert.ok(exported.get('conveyor_task_wait_seconds_bucket')?.labels.has('le'));
  assert.equal([...(exported.get('conveyor_task_outcomes_total')?.labels ?? [])].sort(), ['outcome', 'service', 'type']);
  assert.not.ok([...exported.keys()].some((name) => !name.startsWith('conveyor_')), 'every series is prefixed conveyor_');
});

test('all four are off by default: the default, dev and k8s/dev values render none of them', async () => {
  for (const [name, file] of Object.entries(VALUES_FILES)) {
    if (name === 'production') continue;
    const rendered = await render([file]);
    const found = rendered.filter((manifest) => manifest.apiVersion.startsWith('monitoring.coreos.com/') || manifest.metadata.name === 'conveyor-dashboard');
    assert.equal(found.map((manifest) => manifest.kind), [], name);
  }
});

test('the production values turn them all on with the Prometheus selector label', async () => {
  const rendered = await render([VALUES_FILES.production]);
  for (const [kind, name] of [['ServiceMonitor', 'conveyor-api'], ['PodMonitor', 'conveyor'], ['PrometheusRule', 'conveyor']] as const) {
    assert.is(pick(rendered, kind, name).metadata.labels?.['release'], 'kube-prometheus-stack', `${kind}/${name}`);
  }
  assert.is(pick(rendered, 'ConfigMap', 'conveyor-dashboard').metadata.labels?.['grafana_dashboard'], '1');
  assert.equal(alertNames(rendered), ALERTS);
  assert.ok(rulesOf(pick(rendered, 'PrometheusRule', 'conveyor')).every((rule) => rule.labels['team'] === 'platform'), 'alertLabels on every alert');
});

test('helm lint --strict passes with everything enabled', async () => {
  const result = await helm(['lint', '--strict', CHART, '--values', VALUES_FILES.default, ...everything.flatMap((pair) => ['--set', pair])]);
  assert.is(result.code, 0, `${result.stdout}\n${result.stderr}`);
});

test('the ServiceMonitor scrapes /metrics on the API Service port `http`, keeping the `service` label of the series', async () => {
  const monitor = pick(manifests, 'ServiceMonitor', 'conveyor-api');
  assert.is(monitor.apiVersion, 'monitoring.coreos.com/v1');
  assert.equal(Object.keys(monitor['spec']).sort(), ['endpoints', 'namespaceSelector', 'selector']);
  const service = pick(manifests, 'Service', 'conveyor-api');
  assert.ok(selects(monitor['spec'].selector, service.metadata.labels ?? {}), 'the selector matches the API Service');
  const others = manifests.filter((manifest) => manifest.kind === 'Service' && manifest !== service);
  assert.not.ok(others.some((other) => selects(monitor['spec'].selector, other.metadata.labels ?? {})), 'the selector matches only the API Service');
  assert.equal(monitor['spec'].namespaceSelector, { matchNames: [NAMESPACE] });
  // /metrics needs an admin key unless api.publicMetrics: Prometheus sends the bootstrap key from its Secret.
  const bearer = { type: 'Bearer', credentials: { name: 'conveyor-bootstrap-key', key: 'AUTH_BOOTSTRAP_KEY' } };
  assert.equal(monitor['spec'].endpoints, [{ port: 'http', path: '/metrics', scheme: 'http', interval: '30s', scrapeTimeout: '10s', honorLabels: true, authorization: bearer }]);
  assert.ok(manifests.some((manifest) => manifest.kind === 'Secret' && manifest.metadata.name === bearer.credentials.name && bearer.credentials.key in manifest['data']), 'the Secret it names is rendered');
  assert.ok(service['spec'].ports.some((port: { name: string; targetPort: string }) => port.name === 'http' && port.targetPort === 'http'));
  const api = podSpecOf(pick(manifests, 'Deployment', 'conveyor-api')).containers[0];
  assert.ok(api.ports.some((port: { name: string; containerPort: number }) => port.name === 'http' && port.containerPort === 8000), 'the API serves /metrics on 8000');

  const tuned = await render([VALUES_FILES.default], ['metrics.serviceMonitor.enabled=true', 'metrics.serviceMonitor.interval=15s', 'metrics.serviceMonitor.scrapeTimeout=5s', 'metrics.serviceMonitor.labels.release=prom']);
  const endpoint = pick(tuned, 'ServiceMonitor', 'conveyor-api')['spec'].endpoints[0];
  assert.equal([endpoint.interval, endpoint.scrapeTimeout], ['15s', '5s']);
  assert.is(pick(tuned, 'ServiceMonitor', 'conveyor-api').metadata.labels?.['release'], 'prom');
});

test('the PodMonitor scrapes the `metrics` port (METRICS_PORT) of the worker and controller pods, and no others', async () => {
  const monitor = pick(manifests, 'PodMonitor', 'conveyor');
  assert.is(monitor.apiVersion, 'monitoring.coreos.com/v1');
  assert.equal(Object.keys(monitor['spec']).sort(), ['namespaceSelector', 'podMetricsEndpoints', 'selector']);
  assert.equal(monitor['spec'].namespaceSelector, { matchNames: [NAMESPACE] });
  assert.equal(monitor['spec'].podMetricsEndpoints, [{ port: 'metrics', path: '/metrics', scheme: 'http', interval: '30s', scrapeTimeout: '10s', honorLabels: true }]);
  const scraped = manifests
    .filter((manifest) => podSpecOf(manifest) && manifest.kind !== 'Pod')
    .filter((workload) => selects(monitor['spec'].selector, workload['spec'].template.metadata.labels))
    .map((workload) => workload.metadata.name)
    .sort();
  assert.equal(scraped, ['conveyor-controller', 'conveyor-worker']);
  for (const name of scraped) {
    const container = podSpecOf(pick(manifests, 'Deployment', name)).containers[0];
    const port = container.ports.find((candidate: { name: string }) => candidate.name === 'metrics');
    const metricsPort = container.env.find((entry: { name: string }) => entry.name === 'METRICS_PORT');
    assert.ok(port, `${name} has no port named metrics`);
    assert.is(String(port.containerPort), metricsPort?.value, `${name}: the metrics port is METRICS_PORT`);
  }
  const noController = await render([], [...external, 'metrics.podMonitor.enabled=true', 'controller.enabled=false', 'worker.pool.enabled=false']);
  assert.equal(pick(noController, 'PodMonitor', 'conveyor')['spec'].selector.matchExpressions, [{ key: 'app.kubernetes.io/component', operator: 'In', values: ['worker'] }]);
});

test('the dashboard ConfigMap carries the sidecar label and exactly dashboards/conveyor.json, and is a valid ConfigMap', async () => {
  const configMap = pick(manifests, 'ConfigMap', 'conveyor-dashboard');
  assert.equal(await builtInProblems(configMap), []);
  assert.is(configMap.metadata.labels?.['grafana_dashboard'], '1');
  assert.is(configMap.metadata.labels?.['app.kubernetes.io/instance'], 'conveyor');
  assert.is(configMap.metadata.namespace, undefined, 'in the release namespace');
  assert.equal(Object.keys(configMap['data']), ['conveyor.json']);
  assert.equal(JSON.parse(configMap['data']['conveyor.json']), dashboard());

  const custom = await render([VALUES_FILES.default], [
    'metrics.dashboard.enabled=true',
    'metrics.dashboard.label=example\\.com/dashboard',
    'metrics.dashboard.labelValue=conveyor',
    'metrics.dashboard.annotations.grafana_folder=Queues',
    'metrics.dashboard.namespace=monitoring',
  ]);
  const moved = pick(custom, 'ConfigMap', 'conveyor-dashboard');
  assert.equal(await builtInProblems(moved), []);
  assert.is(moved.metadata.labels?.['example.com/dashboard'], 'conveyor');
  assert.not.ok('grafana_dashboard' in (moved.metadata.labels ?? {}));
  assert.equal(moved.metadata.annotations, { grafana_folder: 'Queues' });
  assert.is(moved.metadata.namespace, 'monitoring');
});

test('the dashboard: a Prometheus datasource variable that every panel and query uses, unique ids, panels on the grid', () => {
  const board = dashboard();
  assert.is(board.uid, 'conveyor');
  const variables = new Map(board.templating.list.map((variable) => [variable.name, variable]));
  assert.equal([variables.get('datasource')?.type, variables.get('datasource')?.query], ['datasource', 'prometheus']);
  for (const panel of queryPanels()) {
    assert.equal(panel.datasource, { type: 'prometheus', uid: '${datasource}' }, panel.title);
    assert.ok((panel.targets ?? []).length > 0, `${panel.title} has no query`);
    for (const target of panel.targets ?? []) assert.equal(target.datasource, { type: 'prometheus', uid: '${datasource}' }, panel.title);
    assert.equal(new Set(panel.targets?.map((target) => target.refId)).size, panel.targets?.length, `${panel.title}: refIds repeat`);
  }
  for (const variable of board.templating.list.filter((candidate) => candidate.type === 'query')) {
    assert.equal(variable.datasource, { type: 'prometheus', uid: '${datasource}' }, variable.name);
  }
  const ids = board.panels.map((panel) => panel.id);
  assert.is(new Set(ids).size, ids.length, 'panel ids repeat');
  const cells = new Map<string, string>();
  for (const panel of board.panels) {
    const { x, y, w, h } = panel.gridPos;
    assert.ok(x >= 0 && w > 0 && x + w <= 24 && h > 0, `${panel.title} is off the 24-column grid`);
    for (let row = y; row < y + h; row++) {
      for (let column = x; column < x + w; column++) {
        const taken = cells.get(`${row}:${column}`);
        assert.not.ok(taken, `${panel.title} overlaps ${taken}`);
        cells.set(`${row}:${column}`, panel.title);
      }
    }
  }
});

test('the dashboard has the panels an operator needs, each querying the metric it is about', () => {
  const metricsOf = (title: string) => {
    const panel = queryPanels().find((candidate) => candidate.title === title);
    assert.ok(panel, `no panel "${title}"`);
    return new Set((panel.targets ?? []).flatMap((target) => analyse(withoutGrafanaIntervals(target.expr), exported).selectors.map((selector) => selector.metric)));
  };
  const expected: Record<string, string[]> = {
    'Throughput': ['conveyor_tasks_submitted_total', 'conveyor_task_outcomes_total'],
    'Backlog': ['conveyor_tasks', 'conveyor_outbox_pending_tasks', 'conveyor_backlog_tasks'],
    'Wait time': ['conveyor_task_wait_seconds_bucket'],
    'Run time': ['conveyor_task_run_seconds_bucket'],
    'Failures by type': ['conveyor_task_outcomes_total'],
    'Replicas vs backlog': ['conveyor_workerpool_desired_replicas', 'conveyor_workerpool_current_replicas', 'conveyor_backlog_tasks'],
    'HTTP requests': ['conveyor_http_requests_total'],
    'HTTP latency': ['conveyor_http_request_duration_seconds_bucket'],
    'Publish confirms and failures': ['conveyor_publish_failures_total'],
    'Broker and database connected': ['conveyor_broker_connected', 'conveyor_database_up'],
    'Cancel latency': ['conveyor_task_cancel_latency_seconds_bucket'],
    'Duplicate executions and lost workers': ['conveyor_task_duplicate_executions_total'],
    'Controller leader': ['conveyor_controller_leader'],
  };
  for (const [title, metrics] of Object.entries(expected)) {
    const used = metricsOf(title);
    for (const metric of metrics) assert.ok(used.has(metric), `"${title}" does not query ${metric}`);
  }
  const quantiles = (title: string) => queryPanels().find((panel) => panel.title === title)?.targets?.map((target) => /^histogram_quantile\((0\.\d+),/.exec(target.expr)?.[1]);
  assert.equal(quantiles('Wait time'), ['0.5', '0.95', '0.99']);
  assert.equal(quantiles('Run time'), ['0.5', '0.95', '0.99']);
  const failures = queryPanels().find((panel) => panel.title === 'Failures by type')?.targets?.[0]?.expr ?? '';
  assert.match(failures, /outcome=~"failed\|timed_out\|worker_lost"/);
  assert.match(failures, /sum by \(type, outcome\)/);
});

test('every dashboard query and variable parses as PromQL and names only series Conveyor exports, with their labels', () => {
  const board = dashboard();
  let checked = 0;
  for (const panel of queryPanels()) {
    for (const target of panel.targets ?? []) {
      const analysis = analyse(withoutGrafanaIntervals(target.expr), exported);
      assert.equal(analysis.problems, [], `${panel.title} / ${target.refId}: ${target.expr}`);
      assert.ok(analysis.selectors.length > 0, `${panel.title}: no metric in ${target.expr}`);
      const labels = availableLabels(analysis, exported);
      for (const label of legendLabels(target.legendFormat ?? '')) assert.ok(labels.has(label), `${panel.title}: legend {{${label}}} is no label of ${target.expr}`);
      checked++;
    }
  }
  for (const variable of board.templating.list.filter((candidate) => candidate.type === 'query')) {
    const match = /^label_values\((.+),\s*([A-Za-z_][A-Za-z0-9_]*)\)$/.exec(variable.query.query);
    assert.ok(match, `${variable.name}: ${variable.query.query}`);
    assert.is(variable.definition, variable.query.query);
    const analysis = analyse(match[1] as string, exported);
    assert.equal(analysis.problems, [], variable.name);
    assert.ok(availableLabels(analysis, exported).has(match[2] as string), `${variable.name}: no label ${match[2]}`);
    checked++;
  }
  assert.ok(checked >= 40, `only ${checked} queries`);
});

test('the PrometheusRule: the six alerts, each with a duration `for`, a severity and a summary and description', () => {
  const rule = pick(manifests, 'PrometheusRule', 'conveyor');
  assert.is(rule.apiVersion, 'monitoring.coreos.com/v1');
  assert.is(rule.metadata.labels?.['app.kubernetes.io/instance'], 'conveyor');
  assert.equal(Object.keys(rule['spec']), ['groups']);
  for (const group of rule['spec'].groups as { name: string; rules: Rule[] }[]) {
    assert.ok(group.name.length > 0);
    for (const entry of group.rules) assert.equal(Object.keys(entry).sort(), ['alert', 'annotations', 'expr', 'for', 'labels'], entry.alert);
  }
  assert.equal(alertNames(manifests), ALERTS);
  const severities: Record<string, string> = {};
  for (const entry of rulesOf(rule)) {
    assert.match(entry.for, DURATION, entry.alert);
    severities[entry.alert] = entry.labels.severity as string;
    assert.ok((entry.annotations['summary'] ?? '').length > 10, `${entry.alert}: summary`);
    assert.ok((entry.annotations['description'] ?? '').length > 40, `${entry.alert}: description`);
    assert.not.match(JSON.stringify(entry.annotations), /\{\{\s*\.(Values|Release)/, `${entry.alert}: a Helm template leaked`);
    for (const used of [...JSON.stringify(entry.annotations).matchAll(/\$labels\.([A-Za-z_]+)/g)].map((match) => match[1] as string)) {
      assert.ok(availableLabels(analyse(entry.expr, exported), exported).has(used), `${entry.alert}: $labels.${used} is not on its series`);
    }
  }
  assert.equal(severities, {
    ConveyorBacklogGrowingAtMaxReplicas: 'warning',
    ConveyorOldestPendingTaskTooOld: 'warning',
    ConveyorTaskFailureRatioHigh: 'warning',
    ConveyorBrokerDown: 'critical',
    ConveyorNoControllerLeader: 'critical',
    ConveyorDatabaseDown: 'critical',
  });
});

test('every alert expression parses as PromQL, names only exported series with their labels, and stays in the release namespace', () => {
  for (const entry of rulesOf(pick(manifests, 'PrometheusRule', 'conveyor'))) {
    const analysis = analyse(entry.expr, exported);
    assert.equal(analysis.problems, [], `${entry.alert}: ${entry.expr}`);
    assert.ok(analysis.selectors.length > 0, entry.alert);
    for (const selector of analysis.selectors) assert.ok(selector.labels.includes('namespace'), `${entry.alert}: ${selector.metric} is not limited to the namespace`);
    assert.ok(entry.expr.includes(`namespace="${NAMESPACE}"`), entry.alert);
  }
});

test('the alerts say what they watch', () => {
  const expr = (alert: string) => expressionOf(manifests, alert).replaceAll(/\s+/g, ' ');
  const leader = `(conveyor_controller_leader{namespace="${NAMESPACE}"} == 1)`;
  assert.ok(expr('ConveyorBacklogGrowingAtMaxReplicas').includes(`conveyor_workerpool_current_replicas{namespace="${NAMESPACE}", workerpool="${NAMESPACE}/conveyor-worker"} and on (instance) ${leader} ) >= 10`));
  assert.ok(expr('ConveyorBacklogGrowingAtMaxReplicas').includes(`deriv(conveyor_backlog_tasks{namespace="${NAMESPACE}", queue="tasks"}[10m]) and on (instance) ${leader} ) > 0`));
  assert.is(expr('ConveyorOldestPendingTaskTooOld'), `max(conveyor_outbox_oldest_pending_age_seconds{namespace="${NAMESPACE}"}) > 600`);
  assert.match(expr('ConveyorTaskFailureRatioHigh'), /^\( sum\(rate\(conveyor_task_outcomes_total\{[^}]*outcome=~"failed\|timed_out\|worker_lost"\}\[5m\]\)\) \/ sum\(rate\(conveyor_task_outcomes_total\{namespace="conveyor-test"\}\[5m\]\)\) \) > 0.1$/);
  assert.is(expr('ConveyorBrokerDown'), `conveyor_broker_connected{namespace="${NAMESPACE}"} == 0`);
  assert.is(expr('ConveyorNoControllerLeader'), `max(conveyor_controller_leader{namespace="${NAMESPACE}"}) == 0 or absent(conveyor_controller_leader{namespace="${NAMESPACE}"})`);
  assert.is(expr('ConveyorDatabaseDown'), `conveyor_database_up{namespace="${NAMESPACE}", service="api"} == 0`, 'only the API sets conveyor_database_up');
});

test('thresholds, windows, durations, severities and extra labels come from values', async () => {
  // A values file, since --set reads 0.25 as a string.
  const file = join(mkdtempSync(join(tmpdir(), 'conveyor-chart-')), 'values.yaml');
  writeFileSync(file, stringify({
    fullnameOverride: 'queue',
    config: { tasksQueue: 'jobs' },
    worker: { pool: { maxReplicas: 7 } },
    metrics: {
      prometheusRule: {
        enabled: true,
        labels: { release: 'prom' },
        alertLabels: { team: 'queues' },
        backlogGrowingAtMaxReplicas: { window: '30m', for: '15m' },
        oldestPendingTaskTooOld: { minutes: 15, severity: 'critical' },
        taskFailureRatioHigh: { ratio: 0.25, window: '15m', for: '30m' },
        brokerDown: { for: '5m' },
      },
    },
  }));
  const rendered = await render([file], external).finally(() => rmSync(dirname(file), { recursive: true }));
  const manifest = pick(rendered, 'PrometheusRule', 'queue');
  assert.is(manifest.metadata.labels?.['release'], 'prom');
  const rules = new Map(rulesOf(manifest).map((entry) => [entry.alert, entry]));
  const backlog = rules.get('ConveyorBacklogGrowingAtMaxReplicas') as Rule;
  assert.match(backlog.expr, /workerpool="conveyor-test\/queue-worker"\}/);
  assert.match(backlog.expr, />= 7\n/);
  assert.match(backlog.expr, /queue="jobs"\}\[30m\]/);
  assert.is(backlog.for, '15m');
  assert.match(rules.get('ConveyorOldestPendingTaskTooOld')?.expr ?? '', /> 900$/);
  assert.is(rules.get('ConveyorOldestPendingTaskTooOld')?.labels.severity, 'critical');
  const ratio = rules.get('ConveyorTaskFailureRatioHigh') as Rule;
  assert.match(ratio.expr, /\) > 0.25$/);
  assert.is((ratio.expr.match(/\[15m\]/g) ?? []).length, 2);
  assert.is(ratio.for, '30m');
  assert.match(ratio.annotations['summary'] ?? '', /More than 25% /);
  assert.is(rules.get('ConveyorBrokerDown')?.for, '5m');
  for (const entry of rules.values()) {
    assert.is(entry.labels['team'], 'queues', entry.alert);
    assert.equal(analyse(entry.expr, exported).problems, [], entry.alert);
  }
  assert.match(rules.get('ConveyorNoControllerLeader')?.annotations['description'] ?? '', /Lease queue-controller/);
});

test('alerts can be switched off one by one; the backlog alert needs the WorkerPool, the leader alert a running controller', async () => {
  const rule = 'metrics.prometheusRule';
  const without = async (set: string[]) => alertNames(await render([], [...external, `${rule}.enabled=true`, ...set]));
  assert.equal(await without([`${rule}.brokerDown.enabled=false`, `${rule}.databaseDown.enabled=false`]), ALERTS.filter((alert) => alert !== 'ConveyorBrokerDown' && alert !== 'ConveyorDatabaseDown'));
  assert.equal(await without(['worker.pool.enabled=false']), ALERTS.filter((alert) => alert !== 'ConveyorBacklogGrowingAtMaxReplicas'));
  assert.equal(await without(['worker.pool.enabled=false', 'controller.enabled=false']), ALERTS.filter((alert) => alert !== 'ConveyorBacklogGrowingAtMaxReplicas' && alert !== 'ConveyorNoControllerLeader'));
  assert.equal(await without(['controller.replicas=0']), ALERTS.filter((alert) => alert !== 'ConveyorNoControllerLeader'));
  const none = ['backlogGrowingAtMaxReplicas', 'oldestPendingTaskTooOld', 'taskFailureRatioHigh', 'brokerDown', 'noControllerLeader', 'databaseDown'].map((alert) => `${rule}.${alert}.enabled=false`);
  const refused = await template([], [...external, `${rule}.enabled=true`, ...none]);
  assert.is.not(refused.code, 0);
  assert.match(refused.stderr, /metrics\.prometheusRule\.enabled, but every alert is disabled/);
});

test('the schema refuses unknown metrics keys and malformed durations, severities, ratios and label keys', async () => {
  const cases: [string, RegExp][] = [
    ['metrics.serviceMonitor.intervall=30s', /additional properties 'intervall' not allowed/],
    ['metrics.podMonitor.interval=30 seconds', /\/metrics\/podMonitor\/interval/],
    ['metrics.prometheusRule.taskFailureRatioHigh.ratio=1.5', /\/metrics\/prometheusRule\/taskFailureRatioHigh\/ratio/],
    ['metrics.prometheusRule.oldestPendingTaskTooOld.minutes=0', /\/metrics\/prometheusRule\/oldestPendingTaskTooOld\/minutes/],
    ['metrics.prometheusRule.brokerDown.severity=Very Bad', /\/metrics\/prometheusRule\/brokerDown\/severity/],
    ['metrics.dashboard.label=not a label', /\/metrics\/dashboard\/label/],
  ];
  for (const [pair, message] of cases) {
    const result = await template([], [...external, pair]);
    assert.is.not(result.code, 0, pair);
    assert.match(result.stderr, message, pair);
  }
});

test('every conveyor_ metric the READMEs name is one Conveyor exports (a histogram by its family name)', () => {
  const families = new Set([...exported.keys()].map((name) => (exported.get(name)?.kind === 'histogram' ? name.replace(/_(bucket|sum|count)$/, '') : name)));
  for (const readme of [join(ROOT, 'README.md'), join(CHART, 'README.md')]) {
    const text = readFileSync(readme, 'utf8');
    // A name followed by `*` or `_` is a pattern such as `conveyor_workerpool_*_replicas`, which the lookahead skips.
    const named = [...text.matchAll(/\bconveyor_[a-z0-9_]*[a-z0-9](?![a-z0-9_*])/g)].map((match) => match[0]);
    const unknown = [...new Set(named)].filter((name) => !families.has(name) && !exported.has(name));
    assert.equal(unknown, [], readme);
    assert.ok(named.length >= (readme === join(ROOT, 'README.md') ? 30 : 1), `${readme}: only ${named.length} metric names`);
  }
});

test('NOTES.txt says where the metrics, the dashboard and the alerts are', async () => {
  const notes = await installNotes([VALUES_FILES.production]);
  assert.match(notes, /Prometheus scrapes \/metrics of the API \(ServiceMonitor, port 8000, with the API key in Secret conveyor-prometheus-key\) and of the workers and the controller \(PodMonitor, port 9091\)/);
  assert.match(notes, /Grafana: open the "Conveyor" dashboard, loaded by the sidecar from ConfigMap conveyor-dashboard \(label grafana_dashboard=1\)/);
  assert.match(notes, /kubectl get prometheusrule conveyor -n conveyor-test/);
  assert.not.match(await installNotes([VALUES_FILES.default]), /Prometheus scrapes|Grafana:|Alerts:/);
});

test('the PromQL check catches syntax errors, unknown functions and metrics, wrong labels and misused types', () => {
  const problems = (expression: string) => analyse(expression, exported).problems;
  assert.equal(problems('sum by (type) (rate(conveyor_tasks_submitted_total{namespace="x"}[5m]))'), []);
  assert.ok(problems('sum(rate(conveyor_tasks_submitted_total[5m])').some((problem) => problem.startsWith('syntax error')), 'unbalanced parenthesis');
  assert.ok(problems('conveyor_tasks{status="pending"').some((problem) => problem.startsWith('syntax error')), 'unbalanced brace');
  assert.ok(problems('rate(conveyor_tasks_submitted_total[5m)').some((problem) => problem.startsWith('syntax error')), 'unbalanced bracket');
  assert.ok(problems('ratez(conveyor_tasks_submitted_total[5m])').some((problem) => problem.startsWith('syntax error')), 'unknown function');
  assert.ok(problems('rate(conveyor_task_submitted_total[5m])').includes('conveyor_task_submitted_total is not a metric Conveyor exports'));
  assert.ok(problems('conveyor_task_wait_seconds').includes('conveyor_task_wait_seconds is not a metric Conveyor exports'), 'a histogram has no bare series');
  assert.ok(problems('conveyor_task_outcomes_total{status="failed"}').includes('conveyor_task_outcomes_total has no label status'));
  assert.ok(problems('sum by (queue) (conveyor_tasks)').some((problem) => problem.endsWith('has label queue')));
  assert.ok(problems('rate(conveyor_backlog_tasks[5m])').includes('rate() over conveyor_backlog_tasks, a gauge'));
  assert.ok(problems('deriv(conveyor_task_outcomes_total[5m])').includes('deriv() over conveyor_task_outcomes_total, a counter'));
  assert.ok(problems('histogram_quantile(0.9, rate(conveyor_task_wait_seconds_sum[5m]))').some((problem) => problem.startsWith('histogram_quantile() over')));
  assert.ok(problems('rate(conveyor_tasks_submitted_total[$__rate_interval])').some((problem) => problem.startsWith('syntax error')), 'Grafana variables are replaced first');
  assert.equal(problems(withoutGrafanaIntervals('rate(conveyor_tasks_submitted_total[$__rate_interval])')), []);
});

test.run();
