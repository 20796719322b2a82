/**
 * Development logs on a terminal: readable lines instead of JSON, with the same redaction as the
 * JSON every other destination gets (guarantee 2 holds in both formats).
 */
import { Writable } from 'node:stream';
import { BrokerLogger, createPino } from './broker-logger';

function capture(pretty: boolean): { logger: BrokerLogger; raw: () => string } {
  const chunks: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      chunks.push(chunk.toString('utf8'));
      done();
    },
  });
  return { logger: new BrokerLogger(createPino('info', sink, { pretty })), raw: () => chunks.join('') };
}

describe('pretty development logs', () => {
  const accessToken = 'pretty-access-token-1';
  const clientSecret = 'pretty-client-secret-2';

  const write = (logger: BrokerLogger): void => {
    logger.log({ provider: 'copyai', response: { access_token: accessToken, client_secret: clientSecret, expires_in: 3600 } }, 'token response', 'Refresh');
    logger.error(Object.assign(new Error('provider said no'), { headers: { authorization: `Bearer ${accessToken}` } }), 'Refresh');
    logger.warn('plain message', 'Broker');
  };

  it('writes one readable line per entry: time, level, [context] message and the fields, never JSON', () => {
    const logs = capture(true);
    write(logs.logger);
    const lines = logs.raw().split('\n').filter((line) => line !== '');

    expect(lines[0]).toMatch(/^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: \[Refresh\] token response /);
    expect(lines[0]).toContain('"provider":"copyai"');
    expect(lines.some((line) => /^\[\d\d:\d\d:\d\d\.\d{3}\] WARN: \[Broker\] plain message$/.test(line))).toBe(true);
    expect(lines.some((line) => line.includes('ERROR: [Refresh]') && line.includes('provider said no'))).toBe(true);
    expect(lines.every((line) => !line.startsWith('{'))).toBe(true);
  });

  it('redacts exactly as the JSON lines do', () => {
    const pretty = capture(true);
    const json = capture(false);
    write(pretty.logger);
    write(json.logger);

    for (const output of [pretty.raw(), json.raw()]) {
      expect(output).not.toContain(accessToken);
      expect(output).not.toContain(clientSecret);
      expect(output).toContain('[redacted]');
      expect(output).toContain('3600');
    }
    expect(json.raw().split('\n')[0].startsWith('{')).toBe(true);
  });
});
