/**
 * Turns the runs into the figures the DESIGN targets name (medians over rounds), and writes
 * them: a JSON record per run, `latest.md`, and the marked block in README.md when present.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';
import { round } from './process-stats';
import { BENCH_GRANTS } from './bench-environment';
import { LoadResult } from './load';

/** DESIGN's target, with service grants and the read audit on. */
export const TARGET_RATIO = 0.5;
export const TARGET_P99_MS = 10;
export const TARGET_RSS_MB = 200;

export interface MemoryFigures {
  afterBootMb?: number;
  /** After reading `sampleAccounts` different accounts (each one cached). */
  afterSampleMb?: number;
  sampleAccounts: number;
  afterRunMb?: number;
  peakMb?: number;
}

export interface TokenReadReport {
  benchmark: 'token-read';
  startedAt: string;
  finishedAt: string;
  machine: { nproc: number; cpu: string; memoryGb: number; node: string; platform: string; loadAverage1m: number };
  settings: {
    storedConnections: number;
    hotAccounts: number;
    connections: number;
    durationSec: number;
    warmupSec: number;
    rounds: number;
    seedMode: string;
    /** What the read connections held (BENCH_READ_KIND); absent in records from before it existed: oauth. */
    readKind?: string;
    database: 'embedded' | 'external';
    broker: string;
    responseBytes: number;
  };
  timingsSec: { build?: number; seed: number; brokerReady: number; total: number };
  /** `withoutGrants`: the same build with allow-all grants (`*=*\/*`), right after the broker in the same round. */
  rounds: Array<{ raw: LoadResult; broker: LoadResult; ratio: number; withoutGrants?: { result: LoadResult; ratio: number } }>;
  median: {
    raw: { reqPerSec: number; p50Ms: number; p99Ms: number };
    broker: { reqPerSec: number; p50Ms: number; p99Ms: number };
    /** Median of the per-round broker/raw throughput ratios. */
    ratio: number;
    withoutGrants?: { reqPerSec: number; p50Ms: number; p99Ms: number; ratio: number };
  };
  failures: { raw: number; broker: number; withoutGrants?: number };
  brokerMemory: MemoryFigures;
  verdict: { ratio: boolean; p99: boolean; noFailures: boolean; memory?: boolean; memoryPeak?: boolean };
}

export function machineInfo(): TokenReadReport['machine'] {
  return {
    nproc: availableParallelism(),
    cpu: cpus()[0]?.model.trim() ?? 'unknown',
    memoryGb: round(totalmem() / 1024 ** 3, 1),
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    loadAverage1m: round(loadavg()[0], 2),
  };
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

export function summarise(rounds: TokenReadReport['rounds']): Pick<TokenReadReport, 'median' | 'failures'> {
  const figures = (pick: (r: TokenReadReport['rounds'][number]) => LoadResult) => ({
    reqPerSec: Math.round(median(rounds.map((r) => pick(r).reqPerSec))),
    p50Ms: round(median(rounds.map((r) => pick(r).latencyMs.p50)), 2),
    p99Ms: round(median(rounds.map((r) => pick(r).latencyMs.p99)), 2),
  });
  const failed = (result: LoadResult): number => result.errors + result.timeouts + result.non2xx;
  const compared = rounds.every((r) => r.withoutGrants !== undefined) && rounds.length > 0;
  return {
    median: {
      raw: figures((r) => r.raw),
      broker: figures((r) => r.broker),
      ratio: round(median(rounds.map((r) => r.ratio)), 3),
      withoutGrants: compared ? { ...figures((r) => r.withoutGrants!.result), ratio: round(median(rounds.map((r) => r.withoutGrants!.ratio)), 3) } : undefined,
    },
    failures: {
      raw: rounds.reduce((n, r) => n + failed(r.raw), 0),
      broker: rounds.reduce((n, r) => n + failed(r.broker), 0),
      withoutGrants: compared ? rounds.reduce((n, r) => n + failed(r.withoutGrants!.result), 0) : undefined,
    },
  };
}

export function markdownTable(report: TokenReadReport): string {
  const { median: m, settings: s, brokerMemory: mem, machine } = report;
  const ok = (pass: boolean | undefined): string => (pass === undefined ? '' : pass ? 'pass' : '**FAIL**');
  const mb = (value: number | undefined): string => (value === undefined ? 'n/a' : `${value} MB`);
  const w = m.withoutGrants;
  // The comparison column, when the run measured the same build without grants.
  const cell = (value: string): string => (w ? ` ${value} |` : '');
  const lines = [
    `Token read benchmark (\`npm run bench\`), ${report.startedAt}: \`GET /tokens/:account${readKindQuery(report.settings.readKind)}\` (${readKindLabel(report.settings.readKind)}),`,
    `${s.connections} connections, ${s.rounds} rounds of ${s.durationSec} s (medians), ${s.storedConnections.toLocaleString('en-US')} stored connections,`,
    `${s.hotAccounts.toLocaleString('en-US')} accounts read; ${machine.nproc} cores (${machine.cpu}), Node ${machine.node}.`,
    `The broker runs with service grants (\`${BENCH_GRANTS}\`) and the read audit on${w ? '; beside it, the same build with `SERVICE_GRANTS=*=*/*` (allow-all) measured in the same rounds' : ''}.`,
    '',
    `| | raw \`node:http\` | broker |${cell('without grants')} target | |`,
    `| --- | ---: | ---: |${cell('---:')} --- | --- |`,
    `| requests/s | ${m.raw.reqPerSec.toLocaleString('en-US')} | ${m.broker.reqPerSec.toLocaleString('en-US')} |${cell(w?.reqPerSec.toLocaleString('en-US') ?? '')} | |`,
    `| broker / raw | | **${m.ratio.toFixed(3)}** |${cell(w?.ratio.toFixed(3) ?? '')} ≥ ${TARGET_RATIO} | ${ok(report.verdict.ratio)} |`,
    `| p50 latency | ${m.raw.p50Ms} ms | ${m.broker.p50Ms} ms |${cell(`${w?.p50Ms} ms`)} | |`,
    `| p99 latency | ${m.raw.p99Ms} ms | **${m.broker.p99Ms} ms** |${cell(`${w?.p99Ms} ms`)} ≤ ${TARGET_P99_MS} ms | ${ok(report.verdict.p99)} |`,
    `| errors + non-2xx | ${report.failures.raw} | ${report.failures.broker} |${cell(String(report.failures.withoutGrants ?? ''))} 0 | ${ok(report.verdict.noFailures)} |`,
    `| broker RSS after ${mem.sampleAccounts.toLocaleString('en-US')} accounts read | | ${mb(mem.afterSampleMb)} |${cell('')} ${
      s.storedConnections >= 100_000 ? `< ${TARGET_RSS_MB} MB (100k stored)` : ''
    } | ${ok(report.verdict.memory)} |`,
    `| broker RSS after the run (peak) | | ${mb(mem.afterRunMb)} (${mb(mem.peakMb)}) |${cell('')} ${
      s.storedConnections >= 100_000 ? `peak < ${TARGET_RSS_MB} MB` : ''
    } | ${ok(report.verdict.memoryPeak)} |`,
    '',
    `| round | raw req/s | broker req/s | ratio | broker p50 | broker p99 |${w ? ' without grants req/s | ratio | p99 |' : ''} CPU (cores): broker / load generator / PostgreSQL / other |`,
    `| ---: | ---: | ---: | ---: | ---: | ---: |${w ? ' ---: | ---: | ---: |' : ''} --- |`,
    ...report.rounds.map(
      (r, i) =>
        `| ${i + 1} | ${r.raw.reqPerSec.toLocaleString('en-US')} | ${r.broker.reqPerSec.toLocaleString('en-US')} | ${r.ratio.toFixed(3)} | ${r.broker.latencyMs.p50} ms | ${
          r.broker.latencyMs.p99
        } ms |${
          r.withoutGrants ? ` ${r.withoutGrants.result.reqPerSec.toLocaleString('en-US')} | ${r.withoutGrants.ratio.toFixed(3)} | ${r.withoutGrants.result.latencyMs.p99} ms |` : ''
        } ${r.broker.cpu.server ?? 'n/a'} / ${r.broker.cpu.loadGenerator} / ${r.broker.cpu.database ?? 'n/a'} / ${r.broker.cpu.other ?? 'n/a'} |`,
    ),
  ];
  return `${lines.join('\n')}\n`;
}

export interface WrittenResults {
  json: string;
  markdown: string;
  readme: boolean;
}

export function writeReport(report: TokenReadReport, resultsDir: string, readmePath: string): WrittenResults {
  return writeResults(report, markdownTable(report), { resultsDir, readmePath, block: 'token-read', latest: 'latest.md', title: 'Token read benchmark' });
}

/**
 * Writes one phase's results: the full record as `<block>-<time>.json`, its table as the `latest`
 * markdown file, and the table into README.md's `<block>` section (see replaceReadmeBlock).
 */
export function writeResults(
  report: { startedAt: string },
  table: string,
  where: { resultsDir: string; readmePath: string; block: 'token-read' | 'refresh-sweep' | 'webhooks'; latest: string; title: string },
): WrittenResults {
  mkdirSync(where.resultsDir, { recursive: true });
  const json = join(where.resultsDir, `${where.block}-${report.startedAt.replace(/[:.]/g, '-')}.json`);
  writeFileSync(json, `${JSON.stringify(report, null, 2)}\n`);
  const markdown = join(where.resultsDir, where.latest);
  writeFileSync(markdown, `# ${where.title}: latest run\n\n${table}\nFull record (kept where the run wrote it, not committed): \`${json.slice(json.lastIndexOf('bench/'))}\`\n`);
  return { json, markdown, readme: replaceReadmeBlock(where.readmePath, table, where.block) };
}

/**
 * Replaces what sits between `<!-- bench:<block>:start -->` and `<!-- bench:<block>:end -->` in
 * README.md; leaves the file alone when the markers are absent.
 */
export function replaceReadmeBlock(readmePath: string, table: string, block: 'token-read' | 'refresh-sweep' | 'webhooks'): boolean {
  if (!readmePath || !existsSync(readmePath)) return false;
  const startMarker = `<!-- bench:${block}:start -->`;
  const endMarker = `<!-- bench:${block}:end -->`;
  const text = readFileSync(readmePath, 'utf8');
  const start = text.indexOf(startMarker);
  const end = text.indexOf(endMarker, start + startMarker.length);
  if (start === -1 || end === -1) return false;
  writeFileSync(readmePath, `${text.slice(0, start + startMarker.length)}\n${table}${text.slice(end)}`);
  return true;
}

/** What a read of the run's kind asks (BENCH_READ_KIND): v4 reads carry their query. */
function readKindQuery(kind: string | undefined): string {
  return kind === 'v4' ? '?provider=copernica&api=v4' : '';
}

function readKindLabel(kind: string | undefined): string {
  if (kind === 'api_key') return 'valid cached Copy.ai API key';
  if (kind === 'v4') return 'valid cached Copernica REST v4 JWT';
  return 'valid cached Copy.ai token';
}
