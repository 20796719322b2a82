import { Clock } from '@app/common';
import { Inject, Injectable, Logger, LoggerService, Optional } from '@nestjs/common';
import type { Logger as Pino } from 'pino';
import { BrokerLogger } from './broker-logger';
import { redactSecrets } from './redaction';

/** What was done, in the audit trail's terms (DESIGN, "Audit trail"). */
export const AUDIT_ACTIONS = [
  'token.read',
  'connect_session.create',
  'connect.callback',
  'credential.store',
  'connection.refresh',
  'connection.revoke',
  'provider.revoke_all',
  'connections.list',
  'connections.get',
  'audit.list',
  'webhooks.list',
  'webhook.retry',
  'auth.denied',
  'keys.rotate',
  'webhook.given_up',
] as const;
export type AuditAction = (typeof AUDIT_ACTIONS)[number];

/** Who acted, in the audit trail's terms (DESIGN, "Audit trail"). */
export type AuditActorKind = 'admin' | 'service' | 'system' | 'end_user' | 'anonymous';

/**
 * One audited event: the fields of an audit record (DESIGN's `GET /admin/audit` item) but the
 * time, which AuditLog stamps. Every field may be shown to an admin, so none may hold a token,
 * a client secret or an API key: `actor` is the key's name, never its secret.
 */
export interface AuditEvent {
  readonly action: AuditAction;
  /** The API key's name, or `system` / `end_user`. */
  readonly actor: string;
  readonly actorKind: AuditActorKind;
  readonly account?: string | null;
  readonly provider?: string | null;
  /** `ok`, what happened (`revoked`, `refreshed`), or the error code the caller was answered with. */
  readonly outcome: string;
  /** Events folded into this record (token reads are aggregated); 1 when absent. */
  readonly count?: number;
  readonly requestId?: string | null;
  /** A few non-secret facts about the outcome (counts, what the provider said). */
  readonly detail?: Readonly<Record<string, unknown>>;
}

export interface AuditRecord extends AuditEvent {
  readonly at: Date;
}

/**
 * Somewhere audit records go besides the log line: the durable audit table (libs/audit's
 * AuditWriter, records that exist whatever LOG_LEVEL says, durable within 5 s) attaches itself.
 * `write` is called on the request's path, so it must return at once (buffer, then flush).
 */
export interface AuditSink {
  write(record: AuditRecord): void;
}

export const AUDIT_SINKS = Symbol('AUDIT_SINKS');

/** Longest account or provider an audit record keeps: an id that failed validation can be far longer. */
const MAX_TARGET_LENGTH = 128;

/**
 * The audit trail's one entry point for single events (token reads, aggregated, take
 * TokenReadAudit's way to the same table). Each event becomes a record handed to the attached
 * sinks (the durable table), and one JSON log line (context `Audit`) at info through a pino
 * child whose level is fixed, so LOG_LEVEL=warn or error does not hide it; only LOG_LEVEL=silent
 * does (the table keeps the record anyway). The line goes through the broker's logger, so its
 * redaction applies as to any other line.
 */
@Injectable()
export class AuditLog {
  private readonly fallback = new Logger('Audit');
  private readonly children = new WeakMap<Pino, Pino>();
  private readonly sinks: AuditSink[];

  constructor(
    private readonly clock: Clock,
    @Optional() @Inject(AUDIT_SINKS) sinks: ReadonlyArray<AuditSink> = [],
  ) {
    this.sinks = [...sinks];
  }

  /** Adds a sink for every record from now on (the audit table's writer, when its module starts). */
  attach(sink: AuditSink): void {
    if (!this.sinks.includes(sink)) this.sinks.push(sink);
  }

  record(event: AuditEvent): void {
    const record: AuditRecord = {
      ...event,
      account: clipAuditTarget(event.account),
      provider: clipAuditTarget(event.provider),
      // The table shows what the log line would: a secret-named field is censored before either gets it.
      detail: event.detail === undefined ? undefined : (redactSecrets(event.detail) as AuditEvent['detail']),
      at: this.clock.now(),
    };
    this.writeLine(record);
    for (const sink of this.sinks) {
      try {
        sink.write(record);
      } catch (error) {
        // An audit sink failing must not fail the request it describes; the log line was written.
        this.fallback.error({ err: error, action: record.action }, 'audit sink failed');
      }
    }
  }

  private writeLine(record: AuditRecord): void {
    const { action, actor, actorKind, account, provider, outcome, count, requestId, detail } = record;
    const fields = { action, actor, actorKind, account, provider, outcome, count, requestId, detail };
    const target = [record.account, record.provider].filter((part) => part != null && part !== '').join('/');
    const message = `${record.actorKind} ${record.actor}: ${record.action}${target ? ` ${target}` : ''} -> ${record.outcome}`;
    const pino = this.pinoFor(ProcessLogger.current());
    if (pino) pino.info(fields, message);
    else this.fallback.log(`${message} ${JSON.stringify(fields)}`);
  }

  /**
   * The broker's pino, as a child at info whatever its own level (silent stays silent). Looked
   * up on every event rather than kept: the process logger is the one Nest was last given
   * (startBroker's, or a test's capture), the same one every `new Logger(context)` writes to.
   */
  private pinoFor(logger: LoggerService | undefined): Pino | undefined {
    if (!(logger instanceof BrokerLogger)) return undefined;
    let child = this.children.get(logger.pino);
    if (!child) {
      child = logger.pino.child({ context: 'Audit' }, { level: logger.pino.level === 'silent' ? 'silent' : 'info' });
      this.children.set(logger.pino, child);
    }
    return child;
  }
}

/**
 * Nest keeps its process-wide logger (set by NestFactory.create's `logger` option or
 * Logger.overrideLogger) in a protected static; a subclass may read it. The broker's pino is
 * not a provider, and this is where every `new Logger(context)` line goes too.
 */
class ProcessLogger extends Logger {
  static current(): LoggerService | undefined {
    return Logger.staticInstanceRef;
  }
}

/** An account or provider as an audit record keeps it: at most MAX_TARGET_LENGTH characters. */
export function clipAuditTarget<T extends string | null | undefined>(value: T): T {
  return (typeof value === 'string' && value.length > MAX_TARGET_LENGTH ? `${value.slice(0, MAX_TARGET_LENGTH)}…` : value) as T;
}

