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
 * Postgres implementation. A batch is one INSERT over unnest'ed arrays (no placeholder per
 * value, whatever the batch size); paging is keyset on (at, id), newest first.
 */
@Injectable()
export class PostgresAuditRepository extends AuditRepository {
  constructor(private readonly dataSource: DataSource) {
    super();
  }

  async insert(records: ReadonlyArray<AuditRecord>): Promise<void> {
    if (records.length === 0) return;
    await this.dataSource.query(
      `INSERT INTO audit_events (at, actor, actor_kind, action, account, provider, outcome, count, request_id, detail)
       SELECT * FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::int[], $9::text[], $10::jsonb[])
       ON CONFLICT (at, actor, account, provider, outcome) WHERE action = 'token.read'
       DO UPDATE SET count = audit_events.count + EXCLUDED.count`,
      [
        records.map((r) => r.at),
        records.map((r) => r.actor),
        records.map((r) => r.actorKind),
        records.map((r) => r.action),
        records.map((r) => r.account ?? null),
        records.map((r) => r.provider ?? null),
        records.map((r) => r.outcome),
        records.map((r) => r.count ?? 1),
        records.map((r) => r.requestId ?? null),
        records.map((r) => (r.detail === undefined ? null : JSON.stringify(r.detail))),
      ],
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
