import { ManualClock } from '@app/common';
import { Logger, LoggerService } from '@nestjs/common';
import { Writable } from 'node:stream';
import { AuditEvent, AuditLog, AuditRecord } from './audit-log';
import { BrokerLogger, createPino } from './broker-logger';

/** Makes a broker logger at `level` (as startBroker does from LOG_LEVEL) the process logger; returns its lines. */
function processLoggerAt(level: string): Array<Record<string, unknown>> {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line !== '') lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  Logger.overrideLogger(new BrokerLogger(createPino(level, sink)));
  return lines;
}

const EVENT: AuditEvent = {
  action: 'connection.revoke',
  actor: 'ops',
  actorKind: 'admin',
  account: 'acme',
  provider: 'copyai',
  outcome: 'revoked',
  requestId: 'req-1',
  detail: { erasedLocally: true },
};

describe('AuditLog', () => {
  const clock = new ManualClock(Date.UTC(2026, 5, 1, 12));

  it.each(['warn', 'error', 'fatal', 'info', 'debug'])('writes one info line at LOG_LEVEL=%s, with who, what, target and outcome', (level) => {
    const lines = processLoggerAt(level);
    new AuditLog(clock).record(EVENT);
    expect(lines).toEqual([
      expect.objectContaining({
        level: 30,
        context: 'Audit',
        action: 'connection.revoke',
        actor: 'ops',
        actorKind: 'admin',
        account: 'acme',
        provider: 'copyai',
        outcome: 'revoked',
        requestId: 'req-1',
        detail: { erasedLocally: true },
        msg: 'admin ops: connection.revoke acme/copyai -> revoked',
      }),
    ]);
  });

  it('writes nothing at LOG_LEVEL=silent', () => {
    const lines = processLoggerAt('silent');
    new AuditLog(clock).record(EVENT);
    expect(lines).toEqual([]);
  });

  it('leaves the rest of the logger at its level', () => {
    const lines = processLoggerAt('warn');
    new AuditLog(clock).record(EVENT);
    new Logger('Other').log('hidden at warn');
    expect(lines.map((line) => line.context)).toEqual(['Audit']);
  });

  it('goes through the broker logger’s redaction', () => {
    const lines = processLoggerAt('warn');
    new AuditLog(clock).record({ ...EVENT, detail: { token: 'cai_at_secret', note: 'kept' } });
    expect(lines[0].detail).toEqual({ token: '[redacted]', note: 'kept' });
  });

  it('keeps at most 128 characters of an account or provider (an invalid id may be far longer)', () => {
    const lines = processLoggerAt('warn');
    new AuditLog(clock).record({ ...EVENT, account: 'a'.repeat(1000) });
    expect(lines[0].account).toBe(`${'a'.repeat(128)}…`);
  });

  it('hands each record, stamped by the clock, to the sinks; a failing sink does not fail the caller', () => {
    processLoggerAt('warn');
    const received: AuditRecord[] = [];
    const failing = {
      write: () => {
        throw new Error('table unavailable');
      },
    };
    const audit = new AuditLog(clock, [failing, { write: (record) => received.push(record) }]);
    expect(() => audit.record(EVENT)).not.toThrow();
    expect(received).toEqual([{ ...EVENT, at: new Date(Date.UTC(2026, 5, 1, 12)) }]);
  });

  it('hands sinks attached later every record from then on, with secret-named detail fields censored as in the log', () => {
    processLoggerAt('silent');
    const audit = new AuditLog(clock);
    audit.record(EVENT);
    const received: AuditRecord[] = [];
    const sink = { write: (record: AuditRecord) => received.push(record) };
    audit.attach(sink);
    audit.attach(sink);
    audit.record({ ...EVENT, detail: { refreshToken: 'cai_rt_secret', nested: { apiKey: 'k-secret' }, erasedLocally: true } });
    expect(received).toEqual([{ ...EVENT, detail: { refreshToken: '[redacted]', nested: { apiKey: '[redacted]' }, erasedLocally: true }, at: new Date(Date.UTC(2026, 5, 1, 12)) }]);
  });

  it('still writes, as text, when the process logger is not the broker’s', () => {
    const written: string[] = [];
    const plain: LoggerService = { log: (message: string) => written.push(message), error: () => undefined, warn: () => undefined };
    Logger.overrideLogger(plain);
    new AuditLog(clock).record(EVENT);
    expect(written).toEqual([expect.stringContaining('admin ops: connection.revoke acme/copyai -> revoked')]);
  });
});
