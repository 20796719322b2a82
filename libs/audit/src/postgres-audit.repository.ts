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

type Query = (sql: string, parameters: unknown[]) => Promise<unknown>;

/** Token reads sharing minute, service, actor kind, provider and outcome: their accounts and counts, in the same order. */
type ReadGroup = [atMs: number, actor: string, actorKind: AuditActorKind, provider: string | null, outcome: string, accounts: Array<string | null>, counts: number[]];

/**
 * Postgres implementation. A batch is written with one JSON parameter per kind of record, whatever
 * its size: single events as rows, token reads by column in groups (see insert); paging is keyset
 * on (at, id), newest first.
 */
@Injectable()
export class PostgresAuditRepository extends AuditRepository {
  constructor(private readonly dataSource: DataSource) {
    super();
  }

  async insert(records: ReadonlyArray<AuditRecord>): Promise<void> {
    if (records.length === 0) return;
    // JSON parameters: V8 writes them natively, where per-column arrays cost the driver an escape
    // per element (tens of times slower at a few thousand rows). Single events go as one array of
    // rows. Token reads, nearly all the rows of a busy replica, go by column in groups sharing
    // minute, service, provider and outcome: a list of accounts and one of counts per group, which
    // costs Postgres about a fifth less to parse and upsert than a row each (and the broker less
    // to build).
    const events: unknown[] = [];
    const reads: ReadGroup[] = [];
    const groups = new Map<string, ReadGroup>();
    let last: ReadGroup | undefined;
    for (const r of records) {
      if (r.action !== 'token.read') {
        events.push([r.at.getTime(), r.actor, r.actorKind, r.action, storable(r.account), storable(r.provider), r.outcome, r.count ?? 1, r.requestId ?? null, r.detail ?? null]);
        continue;
      }
      const at = r.at.getTime();
      const provider = storable(r.provider);
      // A drain hands on the rows of one minute in a row, mostly of the same few groups: compare with the last first.
      if (last === undefined || last[0] !== at || last[1] !== r.actor || last[2] !== r.actorKind || last[3] !== provider || last[4] !== r.outcome) {
        const key = `${at}\u0000${r.actor}\u0000${r.actorKind}\u0000${provider ?? '\u0001'}\u0000${r.outcome}`;
        last = groups.get(key);
        if (last === undefined) {
          last = [at, r.actor, r.actorKind, provider, r.outcome, [], []];
          groups.set(key, last);
          reads.push(last);
        }
      }
      last[5].push(storable(r.account));
      last[6].push(r.count ?? 1);
    }
    const insertEvents = (query: Query): Promise<unknown> =>
      query(
        `INSERT INTO audit_events (at, actor, actor_kind, action, account, provider, outcome, count, request_id, detail)
         SELECT to_timestamp((r->>0)::float8 / 1000), r->>1, r->>2, r->>3, r->>4, r->>5, r->>6, (r->>7)::int, r->>8, NULLIF(r->9, 'null'::jsonb)
         FROM jsonb_array_elements($1::jsonb) AS r`,
        [JSON.stringify(events)],
      );
    // A token.read row is an aggregate (no request id, no detail) that every flush of every
    // replica adds its count to. Plain json, not jsonb: each list is read once, in order.
    const insertReads = (query: Query): Promise<unknown> =>
      query(
        `INSERT INTO audit_events (at, actor, actor_kind, action, account, provider, outcome, count)
         SELECT to_timestamp((g->>0)::float8 / 1000), g->>1, g->>2, 'token.read', r.account, g->>3, g->>4, r.count::int
         FROM json_array_elements($1::json) AS g, ROWS FROM (json_array_elements_text(g->5), json_array_elements_text(g->6)) AS r(account, count)
         ON CONFLICT (at, actor, account, provider, outcome) WHERE action = 'token.read'
         DO UPDATE SET count = audit_events.count + EXCLUDED.count`,
        [JSON.stringify(reads)],
      );
    const query: Query = (sql, parameters) => this.dataSource.query(sql, parameters);
    if (reads.length === 0) await insertEvents(query);
    else if (events.length === 0) await insertReads(query);
    // Both in one transaction: a batch is written whole or not at all (a retry must not count reads twice).
    else
      await this.dataSource.transaction(async (manager) => {
        const inTransaction: Query = (sql, parameters) => manager.query(sql, parameters);
        await insertEvents(inTransaction);
        await insertReads(inTransaction);
      });
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
