import type { AuditAction, AuditRecord } from '@app/observability';

/** GET /admin/audit's filters; each one given narrows the page (`since` inclusive, `until` exclusive). */
export interface AuditFilter {
  readonly account?: string;
  readonly provider?: string;
  readonly actor?: string;
  readonly action?: AuditAction;
  readonly since?: Date;
  readonly until?: Date;
}

export interface AuditPage {
  /** Newest first. */
  readonly items: AuditRecord[];
  /** Where the next page starts; null on the last page. */
  readonly nextCursor: string | null;
}

/**
 * The audit table. Records are written in batches by AuditWriter; a `token.read` record adds
 * its count to the stored row of the same minute, service, account, provider and outcome (any
 * replica may have written it), every other record is a row of its own.
 */
export abstract class AuditRepository {
  /** Writes every record in one statement. */
  abstract insert(records: ReadonlyArray<AuditRecord>): Promise<void>;
  /** A page of records matching `filter`, newest first, after `cursor` (a nextCursor this repository issued). */
  abstract list(filter: AuditFilter, cursor: string | null, limit: number): Promise<AuditPage>;
  /** Deletes at most `limit` records older than `cutoff`, oldest first; how many went. */
  abstract deleteOlderThan(cutoff: Date, limit: number): Promise<number>;
}
