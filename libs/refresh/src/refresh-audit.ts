import { ErrorCode } from '@app/common';
import type { AuditLog } from '@app/observability';
import type { RefreshOutcome } from './refresh-outcome';

/** The connection a refresh was for, as far as the caller knows it. */
export interface RefreshAuditTarget {
  readonly connectionId: string;
  readonly account: string | null;
  readonly provider: string | null;
}

/**
 * Records a refresh the broker made on its own (`system`, DESIGN's `connection.refresh` with
 * `detail.trigger`): `needs_reauth`, or `failed` with the code a caller would be answered with.
 * Successes, and outcomes that are no failure of the refresh (nothing to do, another holder, not
 * refreshable), are not listed: the metrics count them. Called by whoever received the outcome
 * (TokenService for reads, RefreshSweeper for the sweep); admin refreshes are audited by the admin
 * request itself.
 */
export function auditSystemRefresh(audit: AuditLog, outcome: RefreshOutcome, target: RefreshAuditTarget, trigger: 'read' | 'sweep'): void {
  let result: { outcome: 'needs_reauth' | 'failed'; code?: ErrorCode; retryAfterSec?: number } | undefined;
  switch (outcome.kind) {
    case 'refreshed':
    case 'fresh':
    case 'not_refreshable':
    case 'inactive':
    case 'busy':
      return;
    case 'needs_reauth':
      result = { outcome: 'needs_reauth' };
      break;
    case 'transient':
      result = { outcome: 'failed', code: ErrorCode.ProviderUnavailable, retryAfterSec: outcome.retryAfterSec };
      break;
    case 'misconfigured':
      result = { outcome: 'failed', code: ErrorCode.ProviderMisconfigured };
      break;
    case 'unreadable':
      result = { outcome: 'failed', code: ErrorCode.TokenUnreadable };
      break;
  }
  audit.record({
    action: 'connection.refresh',
    actor: 'system',
    actorKind: 'system',
    account: target.account,
    provider: target.provider,
    outcome: result.outcome,
    detail: { trigger, connectionId: target.connectionId, ...(result.code ? { code: result.code } : {}), ...(result.retryAfterSec !== undefined ? { retryAfterSec: result.retryAfterSec } : {}) },
  });
}
