/**
 * The webhook phase: DESIGN's "an event reaches a healthy receiver within 2 s (p99) of the change
 * that caused it", with three replicas delivering. Three broker children (dist/, production, the
 * sandbox's providers) share the database and one WEBHOOK_URLS receiver in this process. N Copy.ai
 * connections are seeded in bulk (no events), then revoked through the admin API, spread over the
 * replicas at a steady pace: each revoke records one connection.revoked in its statement. The
 * latency of an event is its arrival at the receiver minus its `timestamp` (the database's clock
 * at the change; same machine, same clock). Every webhook-id must arrive exactly once.
 */
import { randomBytes } from 'node:crypto';
import { Client } from 'pg';
import { Webhook } from 'standardwebhooks';
import { WebhookReceiver } from '../../test/support/webhook-receiver';
import { BenchEnvironment, ROOT, seed, startBroker } from './bench-environment';
import { Cleanup } from './cleanup';
import { percentile } from './load';
import { round } from './process-stats';
import { machineInfo, writeResults, WrittenResults } from './report';

export const TARGET_WEBHOOK_P99_MS = 2_000;

export interface WebhookSettings {
  events: number;
  replicas: number;
  /** Changes started per second (spread over the replicas). */
  ratePerSec: number;
}

export interface WebhookLatencyReport {
  benchmark: 'webhooks';
  startedAt: string;
  finishedAt: string;
  machine: ReturnType<typeof machineInfo>;
  settings: WebhookSettings & { broker: string };
  /** From the first change to the last event received. */
  wallSec: number;
  received: number;
  duplicates: number;
  missing: number;
  badSignatures: number;
  latencyMs: { p50: number; p90: number; p99: number; max: number };
  /**
   * Where the time went, from the tables (database clock): change → delivery row (dispatch),
   * delivery row → its last attempt's claim, p50 and p99.
   */
  stagesMs: { dispatch: { p50: number; p99: number }; claim: { p50: number; p99: number } };
  verdict: { p99: boolean; exactlyOnce: boolean };
}

export async function runWebhookLatency(settings: WebhookSettings, env: BenchEnvironment, cleanup: Cleanup, dist: string, step: (message: string) => void): Promise<WebhookLatencyReport> {
  const startedAt = new Date();
  const receiver = await WebhookReceiver.start();
  cleanup.add('stop the webhook receiver', () => receiver.close());
  const secret = `whsec_${randomBytes(32).toString('base64')}`;
  const adminKey = `adm-${randomBytes(24).toString('base64url')}`;
  // The phases share one database: start from no connections and no events (TRUNCATE: no NOTIFY storm).
  const db = new Client({ connectionString: env.database.url, application_name: 'token-broker-bench-webhooks' });
  await db.connect();
  cleanup.add('close the webhook phase database client', () => db.end());
  await db.query('TRUNCATE connections, lifecycle_events, webhook_deliveries');
  step(`webhooks: starting ${settings.replicas} replicas and storing ${settings.events.toLocaleString('en-US')} connections`);
  const replicas = await Promise.all(
    Array.from({ length: settings.replicas }, (_, i) =>
      startBroker(cleanup, env, {
        name: `webhook replica ${i + 1}`,
        dist,
        env: { WEBHOOK_URLS: `${receiver.url}/events`, WEBHOOK_SECRET: secret, ADMIN_API_KEYS: `bench-admin:${adminKey}` },
      }),
    ),
  );
  const [seeded] = await Promise.all([seed(env, settings.events, 'bulk'), ...replicas.map((r) => r.ready)]);

  step(`webhooks: revoking ${seeded.length.toLocaleString('en-US')} connections at ${settings.ratePerSec}/s over ${settings.replicas} replicas`);
  const firstChangeMs = Date.now();
  const gapMs = 1_000 / settings.ratePerSec;
  const revokes: Array<Promise<void>> = [];
  for (const [index, connection] of seeded.entries()) {
    const wait = firstChangeMs + index * gapMs - Date.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    const replica = replicas[index % replicas.length].server;
    revokes.push(
      fetch(`${replica.target.url}/admin/connections/${connection.account}/revoke?provider=copyai`, { method: 'POST', headers: { authorization: `Bearer ${adminKey}` } }).then(async (response) => {
        await response.arrayBuffer();
        if (response.status !== 200) throw new Error(`revoke of ${connection.account} answered ${response.status}`);
      }),
    );
  }
  await Promise.all(revokes);
  await receiver.waitFor(`${seeded.length} events`, (all) => new Set(all.map((r) => r.webhookId)).size >= seeded.length, 60_000).catch(() => undefined);
  // A moment more, so a duplicate sent late is counted.
  await new Promise((resolve) => setTimeout(resolve, 2_000));

  const verifier = new Webhook(secret);
  let badSignatures = 0;
  const latencies: number[] = [];
  const seen = new Set<string>();
  let duplicates = 0;
  for (const event of receiver.received) {
    try {
      verifier.verify(event.body, { 'webhook-id': event.webhookId, 'webhook-timestamp': event.timestamp, 'webhook-signature': event.signature });
    } catch {
      badSignatures++;
    }
    if (seen.has(event.webhookId)) {
      duplicates++;
      continue;
    }
    seen.add(event.webhookId);
    latencies.push(event.receivedAtMs - Date.parse(event.payload.timestamp));
  }
  latencies.sort((a, b) => a - b);
  const lastMs = Math.max(...receiver.received.map((r) => r.receivedAtMs));
  const latencyMs = { p50: percentile(latencies, 0.5, 1), p90: percentile(latencies, 0.9, 1), p99: percentile(latencies, 0.99, 1), max: percentile(latencies, 1, 1) };
  const missing = seeded.length - seen.size;
  const stages = await db
    .query<{ dispatch_p50: number; dispatch_p99: number; claim_p50: number; claim_p99: number }>(
      `SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM d.created_at - e.occurred_at)) * 1000 AS dispatch_p50,
              percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM d.created_at - e.occurred_at)) * 1000 AS dispatch_p99,
              percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM d.last_attempt_at - d.created_at)) * 1000 AS claim_p50,
              percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM d.last_attempt_at - d.created_at)) * 1000 AS claim_p99
       FROM webhook_deliveries d JOIN lifecycle_events e ON e.id = d.event_id`,
    );
  const stage = stages.rows[0];
  const stagesMs = {
    dispatch: { p50: round(Number(stage.dispatch_p50), 1), p99: round(Number(stage.dispatch_p99), 1) },
    claim: { p50: round(Number(stage.claim_p50), 1), p99: round(Number(stage.claim_p99), 1) },
  };
  return {
    benchmark: 'webhooks',
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    machine: machineInfo(),
    settings: { ...settings, broker: dist.slice(ROOT.length + 1) || dist },
    wallSec: round((lastMs - firstChangeMs) / 1000, 1),
    received: receiver.received.length,
    duplicates,
    missing,
    badSignatures,
    latencyMs,
    stagesMs,
    verdict: { p99: latencyMs.p99 <= TARGET_WEBHOOK_P99_MS, exactlyOnce: duplicates === 0 && missing === 0 && badSignatures === 0 },
  };
}

export function webhookMarkdown(report: WebhookLatencyReport): string {
  const pass = (ok: boolean): string => (ok ? 'pass' : '**FAIL**');
  return [
    `Webhook benchmark (\`npm run bench\`), ${report.startedAt}: ${report.settings.events.toLocaleString('en-US')} connection.revoked events, ` +
      `${report.settings.replicas} replicas, changes at ${report.settings.ratePerSec}/s, a healthy receiver on 127.0.0.1; ${report.machine.nproc} cores, Node ${report.machine.node}.`,
    '',
    '| | figure | target | |',
    '| --- | ---: | --- | --- |',
    `| change → receiver, p50 | ${report.latencyMs.p50} ms | | |`,
    `| change → receiver, p90 | ${report.latencyMs.p90} ms | | |`,
    `| change → receiver, p99 | **${report.latencyMs.p99} ms** | ≤ ${TARGET_WEBHOOK_P99_MS} ms | ${pass(report.verdict.p99)} |`,
    `| change → receiver, max | ${report.latencyMs.max} ms | | |`,
    `| events received / missing / duplicated / bad signature | ${report.received} / ${report.missing} / ${report.duplicates} / ${report.badSignatures} | 0 missing, 0 duplicated | ${pass(report.verdict.exactlyOnce)} |`,
    `| change → delivery queued (dispatch), p50 / p99 | ${report.stagesMs.dispatch.p50} / ${report.stagesMs.dispatch.p99} ms | | |`,
    `| queued → claimed for its last attempt, p50 / p99 | ${report.stagesMs.claim.p50} / ${report.stagesMs.claim.p99} ms | | |`,
    `| first change → last event | ${report.wallSec} s | | |`,
    '',
  ].join('\n');
}

export function writeWebhookReport(report: WebhookLatencyReport, resultsDir: string): WrittenResults {
  return writeResults(report, webhookMarkdown(report), { resultsDir, readmePath: '', block: 'webhooks', latest: 'webhooks-latest.md', title: 'Webhook benchmark' });
}
