/**
 * An alert on a metric nobody exports never fires. Every metric the PrometheusRule's expressions
 * name (deploy/k8s/base) must be one a running broker serves at /metrics, with the labels the
 * expressions group and match by.
 */
import { parser as promqlParser } from '@prometheus-io/lezer-promql';
import { join } from 'node:path';
import { DataSource } from 'typeorm';
import { ProviderSandbox, startProviderSandbox } from '../../apps/provider-sandbox/src/provider-sandbox';
import { connectAccount } from '../support/connect-dance';
import { startTestBroker, TestBroker } from '../support/test-broker';
import { openTestDataSource, truncateAll } from '../support/test-database';
import { alertRules, K8S_ROOT, renderFromFiles } from './kustomize';

interface MetricUse {
  alert: string;
  metric: string;
  labels: string[];
}

/** The metric names an expression selects (vector selectors and `__name__` matchers) and the labels it uses on each. */
function metricsUsed(alert: string, expr: string): MetricUse[] {
  const uses: MetricUse[] = [];
  const grouping: string[] = [];
  const text = (from: number, to: number): string => expr.slice(from, to);
  promqlParser.parse(expr).iterate({
    enter: (node) => {
      if (node.name === 'GroupingLabels') {
        node.node.getChildren('LabelName').forEach((label) => grouping.push(text(label.from, label.to)));
      }
      if (node.name !== 'VectorSelector') return;
      const identifier = node.node.getChild('Identifier');
      const matchers = node.node.getChild('LabelMatchers');
      const labels: string[] = [];
      let metric = identifier ? text(identifier.from, identifier.to) : undefined;
      for (const matcher of matchers?.getChildren('UnquotedLabelMatcher') ?? []) {
        const name = matcher.getChild('LabelName');
        const value = matcher.getChild('StringLiteral');
        if (!name) continue;
        const label = text(name.from, name.to);
        if (label === '__name__' && value) metric = text(value.from + 1, value.to - 1);
        else labels.push(label);
      }
      if (metric === undefined) throw new Error(`${alert}: a selector without a metric name: ${text(node.from, node.to)}`);
      uses.push({ alert, metric, labels });
    },
  });
  // Grouping labels (sum by (provider)) must exist on every metric the expression aggregates.
  return uses.map((use) => ({ ...use, labels: [...new Set([...use.labels, ...grouping])] }));
}

/** Target labels Prometheus adds to every scraped series: not the broker's to export. */
const TARGET_LABELS = new Set(['namespace', 'pod', 'service', 'instance', 'job', 'container', 'endpoint']);

describe('alert expressions against a running broker', () => {
  let sandbox: ProviderSandbox;
  let broker: TestBroker;

  beforeAll(async () => {
    sandbox = await startProviderSandbox();
    const db: DataSource = await openTestDataSource();
    await truncateAll(db);
    await db.destroy();
    broker = await startTestBroker(sandbox.env());
  });
  afterAll(async () => {
    await broker?.close();
    await sandbox?.close();
  });

  it('names only metrics the broker exports, with labels they carry', async () => {
    // A refresh makes the refresh counter's labelled series appear, so its labels can be checked too.
    await connectAccount(broker, 'acme-alerts', 'copyai');
    expect((await broker.call('/admin/connections/acme-alerts/refresh?provider=copyai', { as: 'admin', method: 'POST' })).status).toBe(200);
    const response = await broker.call('/metrics');
    expect(response.status).toBe(200);
    const exposition = await response.text();

    const families = new Map<string, string>();
    for (const match of exposition.matchAll(/^# TYPE (\S+) (\S+)$/gm)) families.set(match[1], match[2]);
    const labelsOf = (metric: string): Set<string> => {
      const labels = new Set<string>();
      for (const line of exposition.split('\n')) {
        const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}/.exec(line);
        if (sample?.[1] !== metric) continue;
        for (const pair of sample[2].matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="/g)) labels.add(pair[1]);
      }
      return labels;
    };
    /** The family of a sample name: a histogram's _bucket/_sum/_count belong to it. */
    const familyOf = (metric: string): string | undefined => {
      if (families.has(metric)) return metric;
      const base = metric.replace(/_(bucket|sum|count)$/, '');
      return families.get(base) === 'histogram' || families.get(base) === 'summary' ? base : undefined;
    };

    const rules = alertRules(renderFromFiles(join(K8S_ROOT, 'base')));
    const uses = rules.flatMap((rule) => metricsUsed(rule.alert, rule.expr));
    expect(uses.length).toBeGreaterThanOrEqual(rules.length);

    const unknown = uses.filter((use) => familyOf(use.metric) === undefined).map((use) => `${use.alert}: ${use.metric}`);
    expect(unknown).toEqual([]);

    // Labels, from the series the broker shows (Prometheus adds the target's own).
    const missingLabels: string[] = [];
    for (const use of uses) {
      const present = labelsOf(use.metric);
      for (const label of use.labels) if (!TARGET_LABELS.has(label) && !present.has(label)) missingLabels.push(`${use.alert}: ${use.metric} has no label ${label}`);
    }
    expect(missingLabels).toEqual([]);
  });
});
