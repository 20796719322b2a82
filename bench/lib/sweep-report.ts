/**
 * The refresh sweep's figures (DESIGN target: 10,000 due tokens, 50 ms token endpoint, done
 * within 1.3 × count × latency / concurrency, no token expiring unrefreshed, no duplicate
 * refresh) and how they are written: a JSON record per run, `sweep-latest.md`, and the
 * `bench:refresh-sweep` block in README.md when its markers are there.
 */
import { machineInfo, writeResults, WrittenResults } from './report';
import type { SweepSettings } from './settings';

export const TARGET_SWEEP_RATIO = 1.3;

export interface RefreshSweepReport {
  benchmark: 'refresh-sweep';
  startedAt: string;
  finishedAt: string;
  machine: ReturnType<typeof machineInfo>;
  settings: Omit<SweepSettings, 'databasePoolSize' | 'stallSec'> & {
    databasePoolSize: number | 'default';
    rotateRefreshTokens: boolean;
    seedMode: string;
    database: 'embedded' | 'external';
    broker: string;
  };
  timingsSec: { seed: number; brokerReady: number; total: number };
  /** count × latency / concurrency. */
  idealSec: number;
  /** From the moment every row became due (the bench's UPDATE committed) to the last refresh written (max last_refreshed_at). */
  wallSec: number;
  /** wallSec / idealSec. */
  ratio: number;
  sweep: {
    /** After the rows became due: the first and the last refresh written. */
    firstRefreshSec: number | null;
    lastRefreshSec: number | null;
    /** The broker's own "sweep refreshed N of M due connections in X ms" lines (LOG_LEVEL=info), from its first claim to its last refresh. */
    brokerSweeps: Array<{ refreshed: number; claimed: number; elapsedMs: number }>;
    refreshesPerSec: number;
    /** count × latency / wall: how many token-endpoint calls were in flight on average (ideal: concurrency). */
    effectiveConcurrency: number;
    /** Refreshes written in each second after the rows became due. */
    perSecond: number[];
  };
  outcome: {
    rows: number;
    /** Rows whose stored access and refresh token both differ from the seeded ones, refreshed after they became due. */
    replaced: number;
    /** Rows still holding a seeded token: each would expire unrefreshed. */
    notReplaced: number;
    /** Rows whose expires_at had passed when the run ended. */
    expired: number;
    needsReauth: number;
    withError: number;
    leasesLeft: number;
    /** Earliest seeded expiry minus the last refresh: > 0 means every refresh landed before any seeded token expired. */
    marginBeforeFirstExpirySec: number | null;
    /** Reads through the broker after the sweep that served the new token (cache invalidated by NOTIFY). */
    readsAfter: { checked: number; servingNewToken: number };
  };
  provider: {
    refreshRequests: number;
    /** Presentations of a refresh token already presented before. */
    duplicateRefreshUses: number;
    /** refreshRequests − count: calls beyond one per connection. */
    extraRequests: number;
    invalidGrants: number;
  };
  database: {
    /**
     * Committed transactions during the sweep, less the bench's own: every broker statement is
     * its own transaction, and the broker's LISTEN session commits one per batch of notifications
     * it reads (the NOTIFY trigger fires on every refresh), so about 1 of these per refresh is not
     * a broker round trip. Includes the broker's idle sweeps (3 claims per interval, one per provider).
     */
    transactions?: number;
    transactionsPerRefresh?: number;
    rowsUpdatedPerRefresh?: number;
  };
  /** CPU seconds per wall second while the sweep ran. */
  cpu: { broker?: number; benchProcess: number; database?: number; other?: number; brokerMsPerRefresh?: number };
  brokerMemory: { beforeMb?: number; afterMb?: number; peakMb?: number };
  verdict: { ratio: boolean; noDuplicates: boolean; noneUnrefreshed: boolean; noFailures: boolean };
}

export function sweepMarkdown(report: RefreshSweepReport): string {
  const { settings: s, outcome: o, provider: p, sweep, cpu, machine } = report;
  const ok = (pass: boolean): string => (pass ? 'pass' : '**FAIL**');
  const n = (value: number): string => value.toLocaleString('en-US');
  const opt = (value: number | undefined, unit = ''): string => (value === undefined ? 'n/a' : `${value}${unit}`);
  const brokerSweep = sweep.brokerSweeps.length
    ? sweep.brokerSweeps.map((b) => `${n(b.refreshed)} of ${n(b.claimed)} in ${(b.elapsedMs / 1000).toFixed(2)} s`).join('; ')
    : 'n/a';
  const rates = sweep.perSecond.slice(0, -1);
  const lines = [
    `Refresh sweep benchmark (\`npm run bench\`), ${report.startedAt}: ${n(s.count)} Copy.ai connections made due at once (tokens`,
    `expiring in ${s.tokenLifetimeSec.minSec / 60}–${s.tokenLifetimeSec.maxSec / 60} min, rotating refresh tokens), sandbox token endpoint +${s.latencyMs} ms; broker child process with`,
    `REFRESH_CONCURRENCY=${s.concurrency}, REFRESH_BATCH_SIZE=${s.batchSize}, REFRESH_SWEEP_INTERVAL_MS=${s.intervalMs}, budget ${n(s.budgetPerMinute)}/min,`,
    `database pool ${s.databasePoolSize}; ${machine.nproc} cores (${machine.cpu}), Node ${machine.node}.`,
    '',
    '| | measured | target | |',
    '| --- | ---: | --- | --- |',
    `| ideal: count × latency / concurrency | ${report.idealSec.toFixed(2)} s | | |`,
    `| wall: rows due → last refresh written | ${report.wallSec.toFixed(2)} s | | |`,
    `| wall / ideal | **${report.ratio.toFixed(3)}** | ≤ ${TARGET_SWEEP_RATIO} | ${ok(report.verdict.ratio)} |`,
    `| refreshes/s (calls in flight on average) | ${n(sweep.refreshesPerSec)} (${sweep.effectiveConcurrency}) | (${s.concurrency}) | |`,
    `| tokens not refreshed (would expire) / expired at the end | ${n(o.notReplaced)} / ${n(o.expired)} | 0 | ${ok(report.verdict.noneUnrefreshed)} |`,
    `| duplicate refresh-token uses / calls beyond one per connection | ${n(p.duplicateRefreshUses)} / ${n(p.extraRequests)} | 0 | ${ok(report.verdict.noDuplicates)} |`,
    `| invalid_grant / needs_reauth / rows with an error / leases left | ${n(p.invalidGrants)} / ${n(o.needsReauth)} / ${n(o.withError)} / ${n(o.leasesLeft)} | 0 | ${ok(report.verdict.noFailures)} |`,
    `| reads after the sweep serving the new token | ${o.readsAfter.servingNewToken} of ${o.readsAfter.checked} | all | |`,
    '',
    `- Broker's own sweep log (first claim → last refresh): ${brokerSweep}. First refresh written ${opt(sweep.firstRefreshSec ?? undefined, ' s')} after the rows became due.`,
    `- Refreshes per second (full seconds): min ${rates.length ? n(Math.min(...rates)) : 'n/a'}, max ${rates.length ? n(Math.max(...rates)) : 'n/a'}; ideal ${n(
      Math.round((1000 * s.concurrency) / Math.max(1, s.latencyMs)),
    )}.`,
    `- CPU (cores): broker ${opt(cpu.broker)} (${opt(cpu.brokerMsPerRefresh, ' ms')} per refresh), PostgreSQL ${opt(cpu.database)}, bench process with the sandbox ${cpu.benchProcess}, other ${opt(cpu.other)}.`,
    `- Database: ${opt(report.database.rowsUpdatedPerRefresh)} row updates and ${opt(
      report.database.transactionsPerRefresh,
    )} committed transactions per refresh (the broker's LISTEN session adds about 1). Broker RSS ${opt(
      report.brokerMemory.beforeMb,
      ' MB',
    )} before, ${opt(report.brokerMemory.afterMb, ' MB')} after (peak ${opt(report.brokerMemory.peakMb, ' MB')}).`,
  ];
  return `${lines.join('\n')}\n`;
}

export function writeSweepReport(report: RefreshSweepReport, resultsDir: string, readmePath: string): WrittenResults {
  return writeResults(report, sweepMarkdown(report), { resultsDir, readmePath, block: 'refresh-sweep', latest: 'sweep-latest.md', title: 'Refresh sweep benchmark' });
}
