import { Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { decodeConnectionCursor, encodeConnectionCursor } from './connection-cursor';
import { ConnectionCount, ConnectionListRepository } from './connection-list.repository';
import { ConnectionRow, RECORD_COLUMNS, toRecord } from './connection.mapper';
import { ConnectionFilter, ConnectionPage } from './connection.model';

/** Postgres implementation: keyset paging on the (account, provider) unique index. */
@Injectable()
export class PostgresConnectionListRepository extends ConnectionListRepository {
  constructor(private readonly dataSource: DataSource) {
    super();
  }

  async list(filter: ConnectionFilter, cursor: string | null, limit: number): Promise<ConnectionPage> {
    const where: string[] = [];
    const params: unknown[] = [];
    if (filter.provider) {
      params.push(filter.provider);
      where.push(`provider = $${params.length}`);
    }
    if (filter.status) {
      params.push(filter.status);
      where.push(`status = $${params.length}`);
    }
    const after = decodeConnectionCursor(cursor);
    if (after) {
      params.push(after[0], after[1]);
      where.push(`(account, provider) > ($${params.length - 1}, $${params.length})`);
    }
    params.push(limit + 1);
    const rows: ConnectionRow[] = await this.dataSource.query(
      `SELECT ${RECORD_COLUMNS} FROM connections ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
       ORDER BY account, provider LIMIT $${params.length}`,
      params,
    );
    const items = rows.slice(0, limit).map(toRecord);
    const last = items[items.length - 1];
    return { items, nextCursor: rows.length > limit && last ? encodeConnectionCursor(last.account, last.provider) : null };
  }

  async countByProviderAndStatus(): Promise<ConnectionCount[]> {
    return this.dataSource.query<ConnectionCount[]>(`SELECT provider, status, count(*)::int AS count FROM connections GROUP BY provider, status`);
  }
}
