import type { AuditActorKind, AuditRecord } from '@app/observability';
import { Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { decodeAuditCursor, encodeAuditCursor } from './audit-cursor';
import { AuditFilter, AuditPage, AuditRepository } from './audit.repository';

const COLUMNS = 'id::text AS id, at, actor, actor_kind, action, account, provider, outcome, count, request_id, detail';

interface AuditRow {
  id: string;
  at: Date;
  actor: string;
  actor_kind: AuditActorKind;
  action: AuditRecord['action'];
  account: string | null;
  provider: string | null;
  outcome: string;
  count: number;
  request_id: string | null;
  detail: Record<string, unknown> | null;
}

/**
 * Postgres implementation. A batch is one INSERT of a JSON array of rows (one parameter, whatever
 * the batch size); paging is keyset on (at, id), newest first.
 */
@Injectable()
export class PostgresAuditRepository extends AuditRepository {
  constructor(private readonly dataSource: DataSource) {
    super();
  }

  async insert(records: ReadonlyArray<AuditRecord>): Promise<void> {
    if (records.length === 0) return;
    // One JSON array of rows as the only parameter: V8 writes it natively, where per-column
    // arrays cost the driver an escape per element (tens of times slower at a few thousand rows).
    // (Token reads grouped by column instead, a list of accounts per minute, service, provider and
    // outcome, saved Postgres 0-20 % of a flush in measurements, within the noise: the upsert
    // itself, not the parsing, is what a read row costs. Reading a group's fields from a plain
    // `json` value re-parses the whole group for every row: quadratic, seconds for 2,000 rows.)
    const events: InsertRow[] = [];
    const reads = new Map<string, InsertRow>();
    for (const r of records) {
      const row: InsertRow = [r.at.getTime(), r.actor, r.actorKind, r.action, storable(r.account), storable(r.provider), r.outcome, r.count ?? 1, r.requestId ?? null, r.detail ?? null];
      if (r.action !== 'token.read') {
        events.push(row);
        continue;
      }
      // Two accounts storable() made equal are one row: a statement must not name a row twice.
      const key = `${row[0]}\u0000${row[1]}\u0000${row[4] ?? '\u0001'}\u0000${row[5] ?? '\u0001'}\u0000${row[6]}`;
      const same = reads.get(key);
      if (same === undefined) reads.set(key, row);
      else same[7] += row[7];
    }
    // Read rows go in the order of their key, whatever order this replica counted them in: two
    // replicas adding to the same rows at once then lock them in the same order, and one waits for
    // the other. In different orders they deadlock, and Postgres fails one of the batches.
    const rows = JSON.stringify(reads.size === 0 ? events : events.concat([...reads.keys()].sort().map((key) => reads.get(key)!)));
    await this.dataSource.query(
      `INSERT INTO audit_events (at, actor, actor_kind, action, account, provider, outcome, count, request_id, detail)
       SELECT to_timestamp((r->>0)::float8 / 1000), r->>1, r->>2, r->>3, r->>4, r->>5, r->>6, (r->>7)::int, r->>8, NULLIF(r->9, 'null'::jsonb)
       FROM jsonb_array_elements($1::jsonb) AS r
       ON CONFLICT (at, actor, account, provider, outcome) WHERE action = 'token.read'
       DO UPDATE SET count = audit_events.count + EXCLUDED.count`,
      [rows],
    );
  }

  async list(filter: AuditFilter, cursor: string | null, limit: number): Promise<AuditPage> {
    const where: string[] = [];
    const params: unknown[] = [];
    const add = (sql: (placeholder: string) => string, value: unknown): void => {
      params.push(value);
      where.push(sql(`$${params.length}`));
    };
    if (filter.account !== undefined) add((p) => `account = ${p}`, filter.account);
    if (filter.provider !== undefined) add((p) => `provider = ${p}`, filter.provider);
    if (filter.actor !== undefined) add((p) => `actor = ${p}`, filter.actor);
    if (filter.action !== undefined) add((p) => `action = ${p}`, filter.action);
    if (filter.since !== undefined) add((p) => `at >= ${p}`, filter.since);
    if (filter.until !== undefined) add((p) => `at < ${p}`, filter.until);
    const after = decodeAuditCursor(cursor);
    if (after) {
      params.push(after.at, after.id);
      where.push(`(at, id) < ($${params.length - 1}::timestamptz, $${params.length}::bigint)`);
    }
    params.push(limit + 1);
    const rows: AuditRow[] = await this.dataSource.query(
      `SELECT ${COLUMNS} FROM audit_events ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
       ORDER BY at DESC, id DESC LIMIT $${params.length}`,
      params,
    );
    const page = rows.slice(0, limit);
    const last = page[page.length - 1];
    return { items: page.map(toRecord), nextCursor: rows.length > limit && last ? encodeAuditCursor({ at: last.at, id: last.id }) : null };
  }

  async deleteOlderThan(cutoff: Date, limit: number): Promise<number> {
    const [, deleted] = await this.dataSource.query<[unknown, number]>(
      `DELETE FROM audit_events WHERE id IN (SELECT id FROM audit_events WHERE at < $1 ORDER BY at LIMIT $2)`,
      [cutoff, limit],
    );
    return deleted;
  }
}

/** A record as the INSERT reads it: at (ms), actor, actor kind, action, account, provider, outcome, count, request id, detail. */
type InsertRow = [number, string, string, string, string | null, string | null, string, number, string | null, unknown];

/** NUL, or half of a surrogate pair (a clipped target can end in one), that Postgres text or JSON refuses. */
// eslint-disable-next-line no-control-regex -- NUL is exactly what is looked for
const UNSTORABLE = /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/**
 * An account or provider as Postgres can store it: a refused read's account (or an admin route's
 * target) is whatever the caller sent, decoded, and a NUL or a lone surrogate in it would make
 * Postgres refuse the whole batch, every other record with it. Each becomes U+FFFD.
 */
function storable(value: string | null | undefined): string | null {
  if (value === null || value === undefined) return null;
  // Test before replacing: nearly every value is plain, and a test allocates nothing.
  UNSTORABLE.lastIndex = 0;
  return UNSTORABLE.test(value) ? value.replace(UNSTORABLE, '\ufffd') : value;
}

function toRecord(row: AuditRow): AuditRecord {
  return {
    at: row.at,
    actor: row.actor,
    actorKind: row.actor_kind,
    action: row.action,
    account: row.account,
    provider: row.provider,
    outcome: row.outcome,
    count: row.count,
    requestId: row.request_id,
    detail: row.detail ?? undefined,
  };
}
