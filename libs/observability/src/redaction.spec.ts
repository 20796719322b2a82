/**
 * Guarantee 2 in the logs: a secret handed to the logger at any depth comes out as "[redacted]",
 * while what an operator needs to read a failure (an error's code, a provider's error code) stays.
 */
import { Writable } from 'node:stream';
import { BrokerLogger, createPino } from './broker-logger';
import { redactLogFields, redactSecrets } from './redaction';

function capture(): { logger: BrokerLogger; lines: () => Array<Record<string, unknown>>; raw: () => string } {
  const chunks: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      chunks.push(chunk.toString('utf8'));
      done();
    },
  });
  const logger = new BrokerLogger(createPino('info', sink));
  const raw = (): string => chunks.join('');
  return { logger, raw, lines: () => raw().split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, unknown>) };
}

const SECRETS = {
  nested: 'nested-access-token-1',
  array: 'refresh-token-in-array-2',
  header: 'Bearer header-token-3',
  apiKey: 'copy-ai-api-key-4',
  cookie: 'session=cookie-5',
  clientSecret: 'client-secret-6',
  oauthCode: 'oauth-code-7',
  verifier: 'pkce-verifier-8',
  jwt: 'eyJ.jwt-9',
  pwToken: 'pw-access-token-10',
};

describe('log redaction', () => {
  it('censors secrets nested at any depth, in arrays and in headers, and leaves the rest', () => {
    const logs = capture();
    logs.logger.log(
      {
        a: { b: { c: { access_token: SECRETS.nested, tokenType: 'bearer' } } },
        grants: [{ refresh_token: SECRETS.array, scope: 'read' }],
        outbound: { headers: { Authorization: SECRETS.header, 'x-copy-ai-api-key': SECRETS.apiKey, 'X-PW-AccessToken': SECRETS.pwToken, accept: 'application/json' } },
        res: { headers: { 'set-cookie': [SECRETS.cookie] } },
        provider: { clientId: 'copyai-client', clientSecret: SECRETS.clientSecret },
        session: { code_verifier: SECRETS.verifier, jwt: SECRETS.jwt },
      },
      'calling the provider',
      'Ctx',
    );
    const raw = logs.raw();
    for (const secret of Object.values(SECRETS)) expect(raw).not.toContain(secret);
    const [line] = logs.lines();
    expect(line).toMatchObject({
      msg: 'calling the provider',
      context: 'Ctx',
      a: { b: { c: { access_token: '[redacted]', tokenType: 'bearer' } } },
      grants: [{ refresh_token: '[redacted]', scope: 'read' }],
      outbound: { headers: { Authorization: '[redacted]', 'x-copy-ai-api-key': '[redacted]', 'X-PW-AccessToken': '[redacted]', accept: 'application/json' } },
      res: { headers: { 'set-cookie': '[redacted]' } },
      provider: { clientId: 'copyai-client', clientSecret: '[redacted]' },
    });
  });

  it("keeps an error's code and a provider's error code, and censors the secrets the error carries", () => {
    const logs = capture();
    const err = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:4010'), {
      code: 'ECONNREFUSED',
      config: { headers: { authorization: SECRETS.header }, params: { code: SECRETS.oauthCode, client_secret: SECRETS.clientSecret } },
      details: { provider: 'copyai', providerCode: 'invalid_grant', code: 'invalid_grant' },
    });
    logs.logger.error({ err, query: { code: SECRETS.oauthCode, state: 's' }, body: { code: SECRETS.oauthCode } }, 'refresh failed', 'RefreshEngine');
    logs.logger.error(err);

    const raw = logs.raw();
    for (const secret of Object.values(SECRETS)) expect(raw).not.toContain(secret);
    const [first, second] = logs.lines();
    for (const line of [first, second]) {
      expect(line.err).toMatchObject({
        type: 'Error',
        message: 'connect ECONNREFUSED 127.0.0.1:4010',
        code: 'ECONNREFUSED',
        config: { headers: { authorization: '[redacted]' }, params: { code: '[redacted]', client_secret: '[redacted]' } },
        details: { provider: 'copyai', providerCode: 'invalid_grant', code: 'invalid_grant' },
      });
      expect(String((line.err as { stack: string }).stack)).toContain('redaction.spec.ts');
    }
    expect(first).toMatchObject({ msg: 'refresh failed', context: 'RefreshEngine', query: { code: '[redacted]', state: 's' }, body: { code: '[redacted]' } });
    // The caller's objects are left as they were.
    expect(err.config.headers.authorization).toBe(SECRETS.header);
  });

  it('copies only what it censors, survives cycles and stops at a fixed depth', () => {
    const clean = { reqId: 'r1', method: 'GET', path: '/tokens/a', statusCode: 200, responseTimeMs: 1.5 };
    // The per-request line: walked, not copied.
    expect(redactLogFields(clean)).toBe(clean);
    expect(redactSecrets(clean)).toBe(clean);

    const looped: Record<string, unknown> = { token: 'looped-secret', name: 'x' };
    looped.self = looped;
    expect(redactSecrets(looped)).toEqual({ token: '[redacted]', name: 'x', self: '[Circular]' });

    let deep: Record<string, unknown> = { password: 'deep-secret' };
    for (let i = 0; i < 50; i++) deep = { next: deep };
    expect(JSON.stringify(redactSecrets(deep))).not.toContain('deep-secret');
  });
});
