// What the chart's dashboard and alerts may query: the metric names Conveyor really exports, read from the
// registries that services/core/src/metrics.ts builds, and a PromQL check on the Prometheus project's own
// grammar (@prometheus-io/lezer-promql) that lists what an expression names.
import { parser } from '@prometheus-io/lezer-promql';
import type { Registry } from 'prom-client';
import { loadConfig } from '../../services/core/src/config.ts';
import { createControllerMetrics, createMetrics, observeTaskTable } from '../../services/core/src/metrics.ts';
import { createRuntime } from '../../services/core/src/runtime.ts';
import { testLog } from '../support/system.ts';

export type SeriesKind = 'counter' | 'gauge' | 'histogram' | 'summary';
/** One exported series name (a histogram counts as its `_bucket`, `_sum` and `_count` series) and its labels. */
export type Exported = { kind: SeriesKind; labels: ReadonlySet<string> };

/**
 * Labels a series gets from its scrape target rather than from Conveyor: Prometheus' `job` and `instance`,
 * and those prometheus-operator's ServiceMonitor and PodMonitor add. (The ServiceMonitor's own `service`
 * label loses to Conveyor's `service` because the chart sets honorLabels.)
 */
export const TARGET_LABELS: ReadonlySet<string> = new Set(['job', 'instance', 'namespace', 'pod', 'container', 'endpoint']);

/** Every series name the api, worker and controller export, built exactly as their services build them. */
export async function exportedSeries(): Promise<Map<string, Exported>> {
  const api = createMetrics('api');
  observeTaskTable(api, async () => ({ byStatus: new Map(), duePending: 0, oldestDueSeconds: 0 }));
  const worker = createMetrics('worker');
  const controller = createControllerMetrics(createMetrics('controller'));
  // The runtime every process holds registers what it owns (conveyor_database_up); building it connects nothing.
  const config = loadConfig({ LOG_LEVEL: 'silent' });
  for (const metrics of [api, worker, controller]) createRuntime(config, testLog, 'conveyor-metrics-names', metrics);
  const exported = new Map<string, Exported>();
  const add = (name: string, kind: SeriesKind, labels: Iterable<string>) => {
    const known = exported.get(name);
    exported.set(name, { kind, labels: new Set([...(known?.labels ?? []), ...labels]) });
  };
  for (const registry of [api.registry, worker.registry, controller.registry] as Registry[]) {
    for (const family of await registry.getMetricsAsJSON()) {
      const metric = registry.getSingleMetric(family.name) as unknown as { labelNames?: readonly string[] } | undefined;
      const labels = ['service', ...(metric?.labelNames ?? [])];
      const kind = String(family.type) as SeriesKind;
      if (kind === 'histogram') {
        add(`${family.name}_bucket`, kind, [...labels, 'le']);
        add(`${family.name}_sum`, kind, labels);
        add(`${family.name}_count`, kind, labels);
      } else if (kind === 'summary') {
        add(family.name, kind, [...labels, 'quantile']);
        add(`${family.name}_sum`, kind, labels);
        add(`${family.name}_count`, kind, labels);
      } else add(family.name, kind, labels);
    }
  }
  return exported;
}

type Node = ReturnType<typeof parser.parse>['topNode'];

export type Selector = { metric: string; labels: string[] };
export type Analysis = {
  /** Syntax errors and uses the exported metrics do not allow; empty when the expression is sound. */
  problems: string[];
  /** Every vector selector, with the labels its matchers name. */
  selectors: Selector[];
};

/** Functions whose argument must be a counter (or a histogram's counter series). */
const COUNTER_FUNCTIONS = new Set(['Rate', 'Irate', 'Increase', 'Resets']);
/** Functions meant for gauges. */
const GAUGE_FUNCTIONS = new Set(['Deriv', 'Delta', 'Idelta', 'PredictLinear']);

/** Grafana's interval variables, replaced by a duration so that the query parses as PromQL. */
export function withoutGrafanaIntervals(query: string): string {
  return query.replaceAll(/\$__(rate_interval|interval|range)\b|\$\{__(rate_interval|interval|range)\}/g, '5m');
}

function childrenOf(node: Node): Node[] {
  const children: Node[] = [];
  for (let child = node.firstChild; child; child = child.nextSibling) children.push(child);
  return children;
}

function descendants(node: Node, name: string): Node[] {
  const found: Node[] = [];
  const walk = (current: Node) => {
    if (current.name === name) found.push(current);
    for (const child of childrenOf(current)) walk(child);
  };
  walk(node);
  return found;
}

function unquote(text: string): string {
  return /^["'`]/.test(text) ? (JSON.parse(`"${text.slice(1, -1).replaceAll('"', '\\"')}"`) as string) : text;
}

/**
 * Parses a PromQL expression with the Prometheus grammar and checks it against the exported series: no
 * syntax error (which also catches unbalanced brackets and unknown functions), every selector names an
 * exported series and only labels it has (its own, `service`, or a target label), grouping and matching
 * labels exist on the series they apply to, counters only under rate/increase, gauges under deriv/delta,
 * and histogram_quantile over `_bucket` series.
 */
export function analyse(expression: string, exported: ReadonlyMap<string, Exported>): Analysis {
  const problems: string[] = [];
  const selectors: Selector[] = [];
  const tree = parser.parse(expression);
  const text = (node: Node) => expression.slice(node.from, node.to);
  tree.iterate({
    enter: (ref) => {
      if (ref.type.isError) problems.push(`syntax error at ${ref.from}: …${expression.slice(Math.max(0, ref.from - 20), ref.from + 20)}…`);
    },
  });

  const selectorOf = (node: Node): Selector | null => {
    const identifier = node.getChild('Identifier');
    const matchers = node.getChild('LabelMatchers');
    const labels = matchers ? [...descendants(matchers, 'LabelName'), ...descendants(matchers, 'QuotedLabelName')].map((label) => unquote(text(label))) : [];
    if (!identifier) return null;
    return { metric: text(identifier), labels };
  };
  const labelsOf = (node: Node): Set<string> => {
    const labels = new Set(TARGET_LABELS);
    for (const selector of descendants(node, 'VectorSelector')) {
      for (const label of exported.get(text(selector.getChild('Identifier') ?? selector))?.labels ?? []) labels.add(label);
    }
    return labels;
  };

  for (const node of descendants(tree.topNode, 'VectorSelector')) {
    const selector = selectorOf(node);
    if (!selector) {
      problems.push(`selector without a metric name: ${text(node)}`);
      continue;
    }
    selectors.push(selector);
    const series = exported.get(selector.metric);
    if (!series) {
      problems.push(`${selector.metric} is not a metric Conveyor exports`);
      continue;
    }
    for (const label of selector.labels) {
      if (label !== '__name__' && !series.labels.has(label) && !TARGET_LABELS.has(label)) problems.push(`${selector.metric} has no label ${label}`);
    }
  }

  for (const call of descendants(tree.topNode, 'FunctionCall')) {
    const identifier = call.getChild('FunctionIdentifier')?.firstChild;
    const name = identifier?.name ?? '';
    const body = call.getChild('FunctionCallBody');
    if (!body) continue;
    const metrics = descendants(body, 'VectorSelector').map((node) => text(node.getChild('Identifier') ?? node));
    for (const metric of metrics) {
      const kind = exported.get(metric)?.kind;
      if (!kind) continue;
      const counterLike = kind === 'counter' || ((kind === 'histogram' || kind === 'summary') && /_(bucket|sum|count)$/.test(metric));
      if (COUNTER_FUNCTIONS.has(name) && !counterLike) problems.push(`${text(identifier as Node)}() over ${metric}, a ${kind}`);
      if (GAUGE_FUNCTIONS.has(name) && kind !== 'gauge') problems.push(`${text(identifier as Node)}() over ${metric}, a ${kind}`);
      if (name === 'HistogramQuantile' && !(kind === 'histogram' && metric.endsWith('_bucket'))) problems.push(`histogram_quantile() over ${metric}, not a histogram's _bucket series`);
    }
  }

  // by/without/on/ignoring/group_left labels must exist on the series they are applied to.
  for (const clause of [...descendants(tree.topNode, 'AggregateModifier'), ...descendants(tree.topNode, 'MatchingModifierClause')]) {
    const scope = clause.parent as Node;
    const known = labelsOf(scope);
    for (const label of descendants(clause, 'LabelName').map(text)) {
      if (!known.has(label)) problems.push(`${text(clause)}: no series in "${text(scope).slice(0, 60)}…" has label ${label}`);
    }
  }
  return { problems, selectors };
}

/** The labels a Grafana legend format such as `{{outcome}} {{type}}` uses. */
export function legendLabels(format: string): string[] {
  return [...format.matchAll(/\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}/g)].map((match) => match[1] as string);
}

/** Labels the series of a whole expression may carry: those of every series it selects, and target labels. */
export function availableLabels(analysis: Analysis, exported: ReadonlyMap<string, Exported>): Set<string> {
  const labels = new Set(TARGET_LABELS);
  for (const selector of analysis.selectors) for (const label of exported.get(selector.metric)?.labels ?? []) labels.add(label);
  return labels;
}
