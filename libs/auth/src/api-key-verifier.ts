import { DomainError, ErrorCode } from '@app/common';
import { AppConfig, NamedSecret } from '@app/config';
import { AuditLog } from '@app/observability';
import { Injectable } from '@nestjs/common';
import { hash, timingSafeEqual } from 'node:crypto';
import { Caller, CallerRole } from './caller';

const BEARER = /^Bearer\s+(\S+)\s*$/i;
/** Longest path an auth.denied record keeps: a denied request's path is the caller's input. */
const MAX_AUDITED_PATH = 200;

/** The request a key is checked for, as the audit trail records a refusal: never its headers. */
export interface AuthAttempt {
  readonly id: unknown;
  readonly method: string;
  readonly url: string;
}

interface StoredKey {
  caller: Caller;
  digest: Buffer;
}

/**
 * Checks bearer secrets against SERVICE_API_KEYS and ADMIN_API_KEYS. Secrets are kept only
 * as SHA-256 digests and compared with timingSafeEqual against every key (no early exit), so
 * neither timing nor length tells a caller how close a guess was.
 */
@Injectable()
export class ApiKeyVerifier {
  private readonly keys: StoredKey[];

  constructor(
    config: AppConfig,
    private readonly audit: AuditLog,
  ) {
    const stored = (role: CallerRole) => (k: NamedSecret): StoredKey => ({ caller: Object.freeze({ name: k.name, role }), digest: digest(k.secret) });
    this.keys = [...config.serviceApiKeys.map(stored('service')), ...config.adminApiKeys.map(stored('admin'))];
  }

  /**
   * The caller an `Authorization` header proves, when it is a key of `role`; otherwise the
   * 401/403 DomainError that says what is wrong (never echoing the secret), audited as
   * `auth.denied` for `attempt`. Used by ApiKeyGuard and by the token read route, which Fastify
   * serves without Nest's guards (see token-read.route.ts).
   */
  authorize(authorization: string | string[] | undefined, role: CallerRole, attempt: AuthAttempt): Caller {
    const match = typeof authorization === 'string' ? BEARER.exec(authorization) : null;
    if (!match) throw this.denied(attempt, undefined, new DomainError(ErrorCode.Unauthorized, 'send an API key as "Authorization: Bearer <secret>"'));
    const caller = this.identify(match[1]);
    if (!caller) throw this.denied(attempt, undefined, new DomainError(ErrorCode.Unauthorized, 'the API key is not recognised'));
    if (caller.role !== role) {
      throw this.denied(attempt, caller, new DomainError(ErrorCode.Forbidden, `this route needs a ${role} key; "${caller.name}" is a ${caller.role} key`));
    }
    return caller;
  }

  /**
   * The caller an `Authorization` header proves when it is a key of `role`, else undefined, with
   * nothing recorded: for the token read's cached lane (token-read.route.ts), which hands every
   * request this refuses to the route, whose `authorize` says why and audits it.
   */
  callerOf(authorization: string | string[] | undefined, role: CallerRole): Caller | undefined {
    const match = typeof authorization === 'string' ? BEARER.exec(authorization) : null;
    const caller = match ? this.identify(match[1]) : undefined;
    return caller?.role === role ? caller : undefined;
  }

  /**
   * Records a refused request (`auth.denied`): the key's name and kind when it is one of ours,
   * else `anonymous`; which route was asked for, without its query (it may carry a secret).
   */
  denied(attempt: AuthAttempt, caller: Caller | undefined, error: DomainError): DomainError {
    this.audit.record({
      action: 'auth.denied',
      actor: caller?.name ?? 'anonymous',
      actorKind: caller?.role ?? 'anonymous',
      outcome: error.code === ErrorCode.Unauthorized ? 'unauthenticated' : 'forbidden',
      requestId: typeof attempt.id === 'string' ? attempt.id : null,
      detail: { method: attempt.method, path: attempt.url.split('?', 1)[0].slice(0, MAX_AUDITED_PATH) },
    });
    return error;
  }

  /** The caller a secret belongs to (one shared, frozen object per key), or undefined. */
  identify(secret: string): Caller | undefined {
    const presented = digest(secret);
    let match: StoredKey | undefined;
    for (const key of this.keys) {
      if (timingSafeEqual(presented, key.digest) && !match) match = key;
    }
    return match?.caller;
  }
}

function digest(secret: string): Buffer {
  // The same 32 bytes as hash(..., 'buffer') ('binary' is latin1: one character per byte), in
  // about 60 % of its time on Node 20, whose Buffer output path is the slow one; every service
  // request pays for one.
  return Buffer.from(hash('sha256', secret, 'binary'), 'binary');
}
