/**
 * The refresh sweep phase of `npm run bench`: N Copy.ai connections become due at once and the
 * broker's real sweep (a child process from dist/ with REFRESH_SCHEDULER_ENABLED=true, as in
 * production) refreshes them against the sandbox with a fixed token-endpoint latency and
 * rotating refresh tokens.
 *
 * 1. The connections are stored as the connect flow would store them (tokens expiring in 5-10
 *    min, so planned for a refresh a few minutes ahead) while the broker starts.
 * 2. Once the broker is ready, one UPDATE makes every row due now. That commit is the start.
 * 3. The bench polls the table until every row is refreshed (or nothing happens for a while).
 *    The end is the last refresh written (max last_refreshed_at, the broker's clock).
 * 4. Then it checks every row (new access and refresh token, no error, no lease left), reads a
 *    few accounts through the broker, and takes the sandbox's counts: refresh calls, refresh
 *    tokens presented twice, invalid_grant answers.
 */
import { KeyRing, TokenCipher } from '@app/crypto';
import { Client } from 'pg';
import { BenchEnvironment, ROOT, seed, shuffled, startBroker } from './bench-environment';
import { cpuSecondsOf, machineBusySeconds, memoryOf, round, sleep, treeCpuSecondsOf } from './process-stats';
import { Cleanup } from './cleanup';
import { machineInfo } from './report';
import { SeededConnection } from '../../test/support/seed-connections';
import { Settings } from './settings';
import { RefreshSweepReport, TARGET_SWEEP_RATIO } from './sweep-report';

const PROVIDER = 'copyai';
const POLL_MS = 200;
const READS_AFTER = 20;

type Step = (message: string) => void;

export async function runRefreshSweep(settings: Settings, env: BenchEnvironment, cleanup: Cleanup, step: Step): Promise<RefreshSweepReport> {
  const startedAt = new Date();
  const s = settings.sweep;
  const db = new Client({ connectionString: env.database.url, application_name: 'token-broker-bench-sweep' });
  await db.connect();
  cleanup.add('close the sweep poller', () => db.end());

  // A fresh table (the read phase's rows go; TRUNCATE fires no row trigger, so no NOTIFY storm).
  await db.query('TRUNCATE connections');
  env.sandbox.configure(PROVIDER, { latencyMs: s.latencyMs, rotateRefreshTokens: true, issueRefreshToken: true, tokenLifetimeSec: 3600, refreshTokenLifetimeSec: null });

  step(`refresh sweep: starting a sweeping broker and storing ${s.count.toLocaleString('en-US')} connections (${settings.seedMode})`);
  const t0 = Date.now();
  const brokerEnv: Record<string, string> = {
    REFRESH_SCHEDULER_ENABLED: 'true',
    REFRESH_CONCURRENCY: String(s.concurrency),
    REFRESH_BATCH_SIZE: String(s.batchSize),
    REFRESH_PROVIDER_BUDGET_PER_MINUTE: String(s.budgetPerMinute),
    REFRESH_SWEEP_INTERVAL_MS: String(s.intervalMs),
    // The sweeper reports each sweep at info level: "sweep refreshed N of M due connections in X ms".
    LOG_LEVEL: 'info',
  };
  if (s.databasePoolSize !== undefined) brokerEnv.DATABASE_POOL_SIZE = String(s.databasePoolSize);
  const { server: broker, ready } = await startBroker(cleanup, env, { name: 'sweeping broker', dist: settings.brokerDist, nodeFlags: settings.brokerNodeFlags, env: brokerEnv });
  let seedSec = 0;
  let readySec = 0;
  const [seeded] = await Promise.all([
    seed(env, s.count, settings.seedMode, s.tokenLifetimeSec).then((rows) => {
      seedSec = (Date.now() - t0) / 1000;
      return rows;
    }),
    ready.then(() => {
      readySec = (Date.now() - t0) / 1000;
    }),
  ]);
  step(`broker ready after ${readySec.toFixed(1)}s; connections stored after ${seedSec.toFixed(1)}s`);
  const byAccount = new Map(seeded.map((c) => [c.account, c]));

  // The broker reads (and caches) a few accounts before the sweep: afterwards they must show the new token.
  const readAccounts = shuffled(seeded).slice(0, READS_AFTER);
  for (const connection of readAccounts) {
    const token = await readToken(broker.target.url, env.headers, connection.account);
    if (token !== connection.accessToken) throw new Error(`GET /tokens/${connection.account} before the sweep did not return the stored token`);
  }
  const notDueYet = await db.query<{ due: string }>(`SELECT count(*) AS due FROM connections WHERE next_refresh_at <= now()`);
  if (Number(notDueYet.rows[0].due) > 0) throw new Error(`${notDueYet.rows[0].due} rows were due before the bench made them due: the seeded lifetimes are too short`);

  const [{ earliest_expiry: earliestExpiry }] = (await db.query<{ earliest_expiry: Date }>(`SELECT min(expires_at) AS earliest_expiry FROM connections`)).rows;
  const statsBefore = await databaseStats(db);
  env.sandbox.resetStats();
  const brokerCpuBefore = cpuSecondsOf(broker.child.pid);
  const databaseCpuBefore = treeCpuSecondsOf(env.database.pid() ?? -1);
  const machineBefore = machineBusySeconds();
  const ownCpuBefore = process.cpuUsage();
  const rssBefore = memoryOf(broker.child.pid)?.rssMb;
  const ideal = (s.count * s.latencyMs) / s.concurrency / 1000;

  step(`making all ${s.count.toLocaleString('en-US')} rows due now (ideal ${ideal.toFixed(2)} s at ${s.latencyMs} ms × ${s.count} / ${s.concurrency})`);
  const dueAt = new Date();
  await db.query(`UPDATE connections SET next_refresh_at = $1 WHERE provider = $2 AND status = 'active'`, [dueAt, PROVIDER]);
  // Rows are claimable from the commit on: that is the start.
  const startMs = Date.now();
  const started = process.hrtime.bigint();

  let polls = 0;
  let pending = s.count;
  let lastProgressMs = Date.now();
  let lastReportMs = Date.now();
  for (;;) {
    await sleep(POLL_MS);
    polls++;
    const { rows } = await db.query<{ pending: string }>(`SELECT count(*) AS pending FROM connections WHERE status = 'active' AND (last_refreshed_at IS NULL OR last_refreshed_at < $1)`, [
      dueAt,
    ]);
    const now = Date.now();
    const left = Number(rows[0].pending);
    if (left < pending) lastProgressMs = now;
    pending = left;
    if (pending === 0) break;
    if (broker.child.exited()) throw new Error(`the sweeping broker exited during the sweep:\n${broker.child.output().trim()}`);
    if (now - lastProgressMs > s.stallSec * 1000) {
      step(`no refresh for ${s.stallSec} s with ${pending.toLocaleString('en-US')} rows left: giving up`);
      break;
    }
    if (now - lastReportMs >= 5_000) {
      step(`  ${(s.count - pending).toLocaleString('en-US')} refreshed after ${((now - startMs) / 1000).toFixed(1)} s`);
      lastReportMs = now;
    }
  }
  const windowSec = Number(process.hrtime.bigint() - started) / 1e9;
  const brokerCpu = delta(brokerCpuBefore, cpuSecondsOf(broker.child.pid));
  const databaseCpu = delta(databaseCpuBefore, treeCpuSecondsOf(env.database.pid() ?? -1));
  const machineCpu = delta(machineBefore, machineBusySeconds());
  const ownCpuUsage = process.cpuUsage(ownCpuBefore);
  const ownCpu = (ownCpuUsage.user + ownCpuUsage.system) / 1e6;
  const memoryAfter = memoryOf(broker.child.pid);
  const stats = env.sandbox.stats();

  const timing = (
    await db.query<{ first: Date | null; last: Date | null }>(`SELECT min(last_refreshed_at) AS first, max(last_refreshed_at) AS last FROM connections WHERE last_refreshed_at >= $1`, [
      dueAt,
    ])
  ).rows[0];
  const lastMs = timing.last?.getTime() ?? Date.now();
  const wallSec = (lastMs - startMs) / 1000;
  const perSecond = (
    await db.query<{ second: number; refreshed: string }>(
      `SELECT floor(extract(epoch FROM last_refreshed_at - $1::timestamptz))::int AS second, count(*) AS refreshed
       FROM connections WHERE last_refreshed_at >= $1 GROUP BY 1 ORDER BY 1`,
      [new Date(startMs)],
    )
  ).rows;
  const histogram: number[] = [];
  for (const row of perSecond) histogram[Math.max(0, row.second)] = (histogram[Math.max(0, row.second)] ?? 0) + Number(row.refreshed);

  const rows = await checkRows(db, env.keyRingSpec, byAccount, dueAt);
  let servingNewToken = 0;
  for (const connection of readAccounts) {
    const token = await readToken(broker.target.url, env.headers, connection.account).catch(() => null);
    if (token !== null && token === rows.accessTokens.get(connection.account) && token !== connection.accessToken) servingNewToken++;
  }

  // Stopping the broker makes its database sessions end, which flushes their statistics.
  await broker.child.stop();
  await sleep(500);
  const statsAfter = await databaseStats(db, true);
  // Our own statements since the first snapshot: the UPDATE, the polls, the checks above (5) and the flush request.
  const ownTransactions = 1 + polls + 5 + 1;
  const transactions = statsBefore && statsAfter ? statsAfter.xactCommit - statsBefore.xactCommit - ownTransactions : undefined;
  const rowsUpdated = statsBefore && statsAfter ? statsAfter.tupUpdated - statsBefore.tupUpdated - s.count : undefined;
  const refreshed = Math.max(1, rows.replaced);

  const refreshRequests = stats.tokenRequests.copyai.refresh;
  const sweepLines = [...broker.child.output().matchAll(/sweep refreshed (\d+) of (\d+) due connections in (\d+) ms/g)].map((m) => ({
    refreshed: Number(m[1]),
    claimed: Number(m[2]),
    elapsedMs: Number(m[3]),
  }));
  const perCore = (seconds: number | undefined): number | undefined => (seconds === undefined ? undefined : round(seconds / windowSec, 2));
  const ratio = round(wallSec / ideal, 3);
  const report: RefreshSweepReport = {
    benchmark: 'refresh-sweep',
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    machine: machineInfo(),
    settings: {
      count: s.count,
      latencyMs: s.latencyMs,
      concurrency: s.concurrency,
      batchSize: s.batchSize,
      budgetPerMinute: s.budgetPerMinute,
      intervalMs: s.intervalMs,
      tokenLifetimeSec: s.tokenLifetimeSec,
      databasePoolSize: s.databasePoolSize ?? 'default',
      rotateRefreshTokens: true,
      seedMode: settings.seedMode,
      database: env.database.kind,
      broker: [...settings.brokerNodeFlags, settings.brokerDist.slice(ROOT.length + 1) || settings.brokerDist].join(' '),
    },
    timingsSec: { seed: round(seedSec, 1), brokerReady: round(readySec, 1), total: round((Date.now() - startedAt.getTime()) / 1000, 1) },
    idealSec: round(ideal, 3),
    wallSec: round(wallSec, 3),
    ratio,
    sweep: {
      firstRefreshSec: timing.first ? round((timing.first.getTime() - startMs) / 1000, 3) : null,
      lastRefreshSec: timing.last ? round(wallSec, 3) : null,
      brokerSweeps: sweepLines,
      refreshesPerSec: Math.round(rows.replaced / Math.max(wallSec, 0.001)),
      effectiveConcurrency: round((rows.replaced * s.latencyMs) / 1000 / Math.max(wallSec, 0.001), 1),
      perSecond: Array.from(histogram, (v) => v ?? 0),
    },
    outcome: {
      rows: rows.total,
      replaced: rows.replaced,
      notReplaced: rows.total - rows.replaced,
      expired: rows.expired,
      needsReauth: rows.needsReauth,
      withError: rows.withError,
      leasesLeft: rows.leasesLeft,
      marginBeforeFirstExpirySec: earliestExpiry && timing.last ? round((earliestExpiry.getTime() - timing.last.getTime()) / 1000, 1) : null,
      readsAfter: { checked: readAccounts.length, servingNewToken },
    },
    provider: {
      refreshRequests,
      duplicateRefreshUses: stats.duplicateRefreshUses,
      extraRequests: Math.max(0, refreshRequests - s.count),
      invalidGrants: stats.invalidGrants,
    },
    database: {
      transactions,
      transactionsPerRefresh: transactions === undefined ? undefined : round(transactions / refreshed, 2),
      rowsUpdatedPerRefresh: rowsUpdated === undefined ? undefined : round(rowsUpdated / refreshed, 2),
    },
    cpu: {
      broker: perCore(brokerCpu),
      benchProcess: round(ownCpu / windowSec, 2),
      database: perCore(databaseCpu),
      other: machineCpu === undefined ? undefined : round(Math.max(0, machineCpu - ownCpu - (brokerCpu ?? 0) - (databaseCpu ?? 0)) / windowSec, 2),
      brokerMsPerRefresh: brokerCpu === undefined ? undefined : round((brokerCpu * 1000) / refreshed, 3),
    },
    brokerMemory: { beforeMb: rssBefore, afterMb: memoryAfter?.rssMb, peakMb: memoryAfter?.peakRssMb },
    verdict: {
      ratio: ratio <= TARGET_SWEEP_RATIO,
      noDuplicates: stats.duplicateRefreshUses === 0 && refreshRequests <= s.count,
      noneUnrefreshed: rows.replaced === s.count && rows.expired === 0,
      noFailures: stats.invalidGrants === 0 && rows.needsReauth === 0 && rows.withError === 0 && rows.leasesLeft === 0 && servingNewToken === readAccounts.length,
    },
  };
  return report;
}

interface RowCheck {
  total: number;
  replaced: number;
  expired: number;
  needsReauth: number;
  withError: number;
  leasesLeft: number;
  accessTokens: Map<string, string>;
}

/** Opens every stored row (same key ring as the broker) and compares its tokens with the seeded ones. */
async function checkRows(db: Client, keyRingSpec: string, seeded: Map<string, SeededConnection>, dueAt: Date): Promise<RowCheck> {
  const cipher = new TokenCipher(KeyRing.parse(keyRingSpec));
  const { rows } = await db.query<{
    id: string;
    account: string;
    status: string;
    access_token_sealed: string | null;
    refresh_token_sealed: string | null;
    expires_at: Date | null;
    last_refreshed_at: Date | null;
    last_error_code: string | null;
    lease_owner: string | null;
    expired: boolean;
  }>(
    `SELECT id, account, status, access_token_sealed, refresh_token_sealed, expires_at, last_refreshed_at, last_error_code, lease_owner,
       (expires_at IS NOT NULL AND expires_at <= now()) AS expired
     FROM connections`,
  );
  const check: RowCheck = { total: rows.length, replaced: 0, expired: 0, needsReauth: 0, withError: 0, leasesLeft: 0, accessTokens: new Map() };
  for (const row of rows) {
    if (row.expired) check.expired++;
    if (row.status === 'needs_reauth') check.needsReauth++;
    if (row.last_error_code !== null) check.withError++;
    if (row.lease_owner !== null) check.leasesLeft++;
    if (row.access_token_sealed === null) continue;
    const access = cipher.open(row.access_token_sealed, { connectionId: row.id, field: 'access_token' });
    const refresh = row.refresh_token_sealed === null ? null : cipher.open(row.refresh_token_sealed, { connectionId: row.id, field: 'refresh_token' });
    check.accessTokens.set(row.account, access);
    const before = seeded.get(row.account);
    const refreshedInTime = row.last_refreshed_at !== null && row.last_refreshed_at.getTime() >= dueAt.getTime();
    if (before && refreshedInTime && access !== before.accessToken && refresh !== null && refresh !== before.refreshToken) check.replaced++;
  }
  return check;
}

/**
 * Committed transactions and updated rows in this database so far. Sessions publish their counts
 * about once a second, so the final snapshot is taken after the broker's sessions ended, and after
 * asking ours to publish (PostgreSQL 15+).
 */
async function databaseStats(db: Client, flushOwn = false): Promise<{ xactCommit: number; tupUpdated: number } | undefined> {
  if (flushOwn) await db.query('SELECT pg_stat_force_next_flush()').catch(() => undefined);
  try {
    const { rows } = await db.query<{ xact_commit: string; tup_updated: string }>(
      `SELECT xact_commit, tup_updated FROM pg_stat_database WHERE datname = current_database()`,
    );
    return rows[0] ? { xactCommit: Number(rows[0].xact_commit), tupUpdated: Number(rows[0].tup_updated) } : undefined;
  } catch {
    return undefined;
  }
}

async function readToken(url: string, headers: Record<string, string>, account: string): Promise<string> {
  const response = await fetch(`${url}/tokens/${encodeURIComponent(account)}`, { headers });
  const text = await response.text();
  if (response.status !== 200) throw new Error(`GET /tokens/${account} answered ${response.status}: ${text.slice(0, 300)}`);
  return (JSON.parse(text) as { accessToken?: string }).accessToken ?? '';
}

function delta(before: number | undefined, after: number | undefined): number | undefined {
  return before === undefined || after === undefined ? undefined : after - before;
}
