import { LoggerService, LogLevel } from '@nestjs/common';
import pino, { DestinationStream, Level, Logger as Pino } from 'pino';
import PinoPretty from 'pino-pretty';
import { redactedErrorSerializer, redactLogFields } from './redaction';

/** LOG_LEVEL values pino understands, plus `silent`. */
export type BrokerLogLevel = Level | 'silent';

export interface PinoFormat {
  /**
   * One readable line per entry (time, level, [context] message, fields) instead of JSON: for a
   * person at a terminal. Redaction happens before either format is written.
   */
  readonly pretty?: boolean;
}

/**
 * The one pino instance of a broker process: JSON lines (on stdout unless told otherwise),
 * secrets redacted at any depth (guarantee 2; see redaction.ts).
 */
export function createPino(level: string, destination?: DestinationStream, format: PinoFormat = {}): Pino {
  const options = {
    level,
    base: { pid: process.pid },
    formatters: { log: redactLogFields },
    serializers: { err: redactedErrorSerializer },
  };
  if (format.pretty) return pino(options, prettyStream(destination));
  return destination ? pino(options, destination) : pino(options);
}

/** pino-pretty in this process, fed the JSON lines pino has already redacted; synchronous, so nothing is lost at exit. */
function prettyStream(destination: DestinationStream | undefined): DestinationStream {
  return PinoPretty({
    destination: destination ?? 1,
    sync: true,
    colorize: destination === undefined && process.stdout.isTTY === true,
    translateTime: 'SYS:HH:MM:ss.l',
    ignore: 'pid,hostname,context',
    messageFormat: '{if context}[{context}] {end}{msg}',
    singleLine: true,
  });
}

const NEST_TO_PINO: Record<LogLevel, Level> = {
  log: 'info',
  error: 'error',
  warn: 'warn',
  debug: 'debug',
  verbose: 'trace',
  fatal: 'fatal',
};

/**
 * Nest's LoggerService on top of pino, so `new Logger('Context')` anywhere in the code base
 * writes the same JSON lines as the request log. Nest passes the logger's context as the last
 * argument; `logger.error({ err }, 'message')` logs the object's fields with the message.
 */
export class BrokerLogger implements LoggerService {
  constructor(readonly pino: Pino) {}

  log(message: unknown, ...params: unknown[]): void {
    this.write('log', message, params);
  }
  error(message: unknown, ...params: unknown[]): void {
    this.write('error', message, params);
  }
  warn(message: unknown, ...params: unknown[]): void {
    this.write('warn', message, params);
  }
  debug(message: unknown, ...params: unknown[]): void {
    this.write('debug', message, params);
  }
  verbose(message: unknown, ...params: unknown[]): void {
    this.write('verbose', message, params);
  }
  fatal(message: unknown, ...params: unknown[]): void {
    this.write('fatal', message, params);
  }

  private write(nestLevel: LogLevel, message: unknown, params: unknown[]): void {
    const level = NEST_TO_PINO[nestLevel];
    if (!this.pino.isLevelEnabled(level)) return;
    const rest = [...params];
    const context = rest.length > 0 && typeof rest[rest.length - 1] === 'string' ? (rest.pop() as string) : undefined;
    const fields: Record<string, unknown> = context ? { context } : {};
    let text: string | undefined;
    if (message instanceof Error) {
      fields.err = message;
    } else if (typeof message === 'object' && message !== null) {
      Object.assign(fields, message);
      if (typeof rest[0] === 'string') text = rest.shift() as string;
    } else {
      text = String(message);
    }
    // Nest's own `logger.error(message, stack)` convention.
    if (nestLevel === 'error' && typeof rest[0] === 'string') fields.stack = rest.shift();
    this.pino[level](fields, text);
  }
}
