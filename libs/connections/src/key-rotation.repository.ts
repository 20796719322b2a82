import { SealContext, SealContexts, TokenCipher } from '@app/crypto';
import { Injectable } from '@nestjs/common';
import { DataSource, EntityManager } from 'typeorm';
import { asUnreadable } from './connection.sealer';

/** One sealed column: where its key id is read from, and the context its values are sealed with. */
interface SealedColumn {
  column: string;
  /** SQL for the key id of the column's value (NULL when the value is NULL). */
  keyId: string;
  context(rowKey: string): SealContext;
}

/** A table holding sealed values, and how a row is named (as text) for the seal context and the update. */
interface SealedTable {
  table: string;
  /** The row's name as text (what its seal contexts are built from). */
  rowKey: string;
  /** The primary key, for ordering and for finding the row by `rowKey` ($1) through its index. */
  primaryKey: string;
  findByRowKey: string;
  /** How an error names a row (never a value). */
  label(rowKey: string): string;
  columns: readonly SealedColumn[];
}

/**
 * Every sealed value the broker stores. A new kind of sealed value is added here, or key
 * rotation leaves it under an old key and readiness cannot vouch for it (guarantee 11).
 */
const SEALED_TABLES: readonly SealedTable[] = [
  {
    table: 'connections',
    rowKey: 'id::text',
    primaryKey: 'id',
    findByRowKey: 'id = $1::uuid',
    label: (id) => id,
    columns: [
      { column: 'access_token_sealed', keyId: 'access_key_id', context: (id) => SealContexts.connectionToken(id, 'access_token') },
      { column: 'refresh_token_sealed', keyId: 'refresh_key_id', context: (id) => SealContexts.connectionToken(id, 'refresh_token') },
      { column: 'credential_sealed', keyId: 'credential_key_id', context: (id) => SealContexts.staticCredential(id) },
      { column: 'derived_token_sealed', keyId: 'derived_key_id', context: (id) => SealContexts.derivedToken(id) },
    ],
  },
  {
    table: 'oauth_states',
    rowKey: `encode(state_hash, 'hex')`,
    primaryKey: 'state_hash',
    findByRowKey: `state_hash = decode($1, 'hex')`,
    label: (hex) => `pending authorization ${hex.slice(0, 12)}`,
    columns: [
      {
        column: 'code_verifier_sealed',
        keyId: `NULLIF(split_part(code_verifier_sealed, '.', 2), '')`,
        context: (hex) => SealContexts.codeVerifier(hex),
      },
    ],
  },
];

export interface ResealProgress {
  /** Rows re-sealed by this batch. */
  resealed: number;
  /** Rows under an old key that were locked by a writer this pass; a later pass takes them. */
  skippedLocked: boolean;
}

/**
 * The stored side of key rotation (DESIGN guarantees 1 and 11): finds sealed values by the key
 * that sealed them, in every column that holds one, and re-seals them under the active key.
 * Opening a value needs nothing but its row's name, so this works beside live replicas; see
 * key-rotation.ts for why that is safe.
 */
@Injectable()
export class KeyRotationRepository {
  constructor(
    private readonly dataSource: DataSource,
    private readonly cipher: TokenCipher,
  ) {}

  /**
   * Re-seals up to `limit` rows holding any value sealed under a key other than the active one,
   * in one transaction. Rows a writer holds are skipped (SKIP LOCKED), never waited on.
   * @throws ConnectionUnreadableError when a value cannot be opened with the ring.
   */
  async resealBatch(limit: number): Promise<ResealProgress> {
    return this.dataSource.transaction(async (manager) => {
      const active = this.cipher.activeKeyId;
      let resealed = 0;
      for (const table of SEALED_TABLES) {
        if (resealed >= limit) break;
        resealed += await this.resealTable(manager, table, active, limit - resealed);
      }
      const remaining = await this.countStale(manager, active);
      return { resealed, skippedLocked: resealed < limit && remaining > 0 };
    });
  }

  /** How many stored values are sealed under each key id, over every sealed column. */
  async countByKeyId(): Promise<Record<string, number>> {
    const parts = SEALED_TABLES.flatMap((t) => t.columns.map((c) => `SELECT ${c.keyId} AS kid FROM ${t.table}`));
    const rows: Array<{ kid: string; count: number }> = await this.dataSource.query(
      `SELECT kid, count(*)::int AS count FROM (${parts.join(' UNION ALL ')}) v WHERE kid IS NOT NULL GROUP BY kid ORDER BY kid`,
    );
    return Object.fromEntries(rows.map((r) => [r.kid, r.count]));
  }

  /**
   * The distinct key ids stored values are sealed under. Cheap at any row count: the
   * connections' key-id indexes are walked one distinct value at a time (a skip scan), and the
   * pending authorizations are few and short-lived.
   */
  async keyIdsInUse(): Promise<string[]> {
    const skipScan = (column: string): string => `(
      WITH RECURSIVE k AS (
        (SELECT ${column} AS kid FROM connections WHERE ${column} IS NOT NULL ORDER BY ${column} LIMIT 1)
        UNION ALL
        SELECT (SELECT ${column} FROM connections WHERE ${column} > k.kid ORDER BY ${column} LIMIT 1) FROM k WHERE k.kid IS NOT NULL
      ) SELECT kid FROM k WHERE kid IS NOT NULL)`;
    const rows: Array<{ kid: string | null }> = await this.dataSource.query(
      `${skipScan('access_key_id')} UNION ${skipScan('refresh_key_id')} UNION ${skipScan('credential_key_id')} UNION ${skipScan('derived_key_id')}
       UNION (SELECT DISTINCT NULLIF(split_part(code_verifier_sealed, '.', 2), '') FROM oauth_states WHERE code_verifier_sealed IS NOT NULL)`,
    );
    return rows.map((r) => r.kid).filter((kid): kid is string => kid !== null).sort();
  }

  private async resealTable(manager: EntityManager, table: SealedTable, active: string, limit: number): Promise<number> {
    const stale = table.columns.map((c) => `${c.keyId} <> $1`).join(' OR ');
    const selected = table.columns.map((c, i) => `${c.column} AS v${i}`).join(', ');
    // SKIP LOCKED: a row being refreshed right now is left for the next pass rather than waited on,
    // and the refresher's fenced write cannot be overwritten by a stale copy from here.
    const rows: Array<Record<string, string | null>> = await manager.query(
      `SELECT ${table.rowKey} AS row_key, ${selected} FROM ${table.table}
       WHERE ${stale} ORDER BY ${table.primaryKey} LIMIT $2 FOR UPDATE SKIP LOCKED`,
      [active, limit],
    );
    for (const row of rows) {
      const rowKey = row.row_key as string;
      const values = table.columns.map((column, i) => {
        const sealed = row[`v${i}`];
        return sealed === null ? null : this.resealIfStale(sealed, column.context(rowKey), table.label(rowKey));
      });
      // No version bump: re-sealing changes no token, so a refresher holding the previous
      // version may still land its (newer) tokens afterwards.
      const assignments = table.columns.map((c, i) => `${c.column} = $${i + 2}`).join(', ');
      await manager.query(`UPDATE ${table.table} SET ${assignments} WHERE ${table.findByRowKey}`, [rowKey, ...values]);
    }
    return rows.length;
  }

  private async countStale(manager: EntityManager, active: string): Promise<number> {
    let total = 0;
    for (const table of SEALED_TABLES) {
      const stale = table.columns.map((c) => `${c.keyId} <> $1`).join(' OR ');
      const [{ count }] = await manager.query<Array<{ count: number }>>(`SELECT count(*)::int AS count FROM ${table.table} WHERE ${stale}`, [active]);
      total += count;
    }
    return total;
  }

  /** The row may hold one value under the active key and another under an old one: only the old one is re-sealed. */
  private resealIfStale(sealed: string, context: SealContext, label: string): string {
    try {
      return this.cipher.needsReseal(sealed) ? this.cipher.reseal(sealed, context) : sealed;
    } catch (error) {
      throw asUnreadable(error, label, sealed);
    }
  }
}
