/**
 * Static credentials (API keys) entered by an admin: PUT /admin/connections/:account/credentials,
 * checked live at the sandbox providers as they will be applied, then served by GET /tokens with
 * the provider's own way of presenting a key. Time is a ManualClock shared by the broker and the
 * sandbox, so expiry is reached by moving it, never by waiting.
 */
import { ManualClock } from '@app/common';
import { RefreshSweeper } from '@app/refresh';
import { DataSource } from 'typeorm';
import { ProviderSandbox, SandboxProvider } from '../../apps/provider-sandbox/src/provider-sandbox';
import { useBrokerSuite } from '../support/broker-suite';
import { connectAccount } from '../support/connect-dance';
import { captureLogs, TestBroker } from '../support/test-broker';

interface Answer {
  status: number;
  body: Record<string, unknown> & { error?: string; message?: string };
  text: string;
}

interface TokenBody {
  accessToken: string;
  tokenType: string;
  expiresAt: string | null;
  authMode: string;
  apply: { headers: Record<string, string>; query: Record<string, string> };
}

/** What DESIGN's table says each provider's key looks like to a caller. */
const EXPECTED: Record<SandboxProvider, { verification: string; apply(key: string, email: string): TokenBody['apply'] }> = {
  copper: {
    verification: 'verified',
    apply: (key, email) => ({ headers: { 'X-PW-AccessToken': key, 'X-PW-Application': 'developer_api', 'X-PW-UserEmail': email }, query: {} }),
  },
  copernica: { verification: 'verified', apply: (key) => ({ headers: {}, query: { access_token: key } }) },
  copyai: { verification: 'not_supported', apply: (key) => ({ headers: { 'x-copy-ai-api-key': key }, query: {} }) },
};
const PROVIDERS = Object.keys(EXPECTED) as SandboxProvider[];
const HOUR_MS = 3_600_000;

describe('static credentials (API keys) stored by an admin', () => {
  const logs = captureLogs('debug');
  const clock = new ManualClock(Date.now());
  const suite = useBrokerSuite({ clock, logger: logs.logger });
  let sandbox: ProviderSandbox;
  let broker: TestBroker;
  let db: DataSource;
  /** Every key a test registered: none may ever show up in a log line or in the database in plaintext. */
  const keysSeen = new Set<string>();
  beforeAll(() => ({ sandbox, broker, db } = suite));
  beforeEach(() => logs.claimProcessLogger());

  const answer = async (response: Response): Promise<Answer> => {
    const text = await response.text();
    return { status: response.status, body: text ? (JSON.parse(text) as Answer['body']) : {}, text };
  };
  const put = async (account: string, provider: string, body: unknown): Promise<Answer> =>
    answer(
      await broker.call(`/admin/connections/${account}/credentials?provider=${provider}`, {
        as: 'admin',
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      }),
    );
  const read = async (account: string, provider: string): Promise<Answer & { token: TokenBody }> => {
    const result = await answer(await broker.call(`/tokens/${account}?provider=${provider}`, { as: 'service' }));
    return { ...result, token: result.body as unknown as TokenBody };
  };
  const view = async (account: string, provider: string): Promise<Answer> =>
    answer(await broker.call(`/admin/connections/${account}?provider=${provider}`, { as: 'admin' }));
  const rows = async (): Promise<number> => Number((await db.query(`SELECT count(*) FROM connections`))[0].count);
  const register = (provider: SandboxProvider, user?: string) => {
    const key = sandbox.registerApiKey(provider, user ? { user } : {});
    keysSeen.add(key.apiKey);
    return key;
  };
  /** The body an admin sends for this provider: the key, and Copper's email. */
  const credentialBody = (provider: SandboxProvider, key: { apiKey: string; userEmail: string }, extra: Record<string, unknown> = {}) => ({
    apiKey: key.apiKey,
    ...(provider === 'copper' ? { userEmail: key.userEmail } : {}),
    ...extra,
  });
  /** Whether the sandbox's API takes `apply` as it stands. */
  const acceptedBySandbox = async (provider: SandboxProvider, apply: TokenBody['apply']): Promise<boolean> => {
    const url = new URL(`${sandbox.url}/${provider}/_sandbox/check`);
    for (const [k, v] of Object.entries(apply.query)) url.searchParams.set(k, v);
    return (await fetch(url, { headers: apply.headers })).status === 200;
  };

  describe.each(PROVIDERS)('%s', (provider) => {
    const expected = EXPECTED[provider];

    it('stores a key checked as it will be applied, and serves it with exactly that apply', async () => {
      const key = register(provider);
      sandbox.resetStats();
      const stored = await put('acme', provider, credentialBody(provider, key));
      expect(stored.status).toBe(200);
      expect(stored.body).toMatchObject({ account: 'acme', provider, status: 'active', authMode: 'api_key', verification: expected.verification, replacedGrant: null });
      expect(stored.text).not.toContain(key.apiKey);
      // The check reached the provider, presented the provider's way (Copy.ai has none to reach).
      expect(sandbox.stats().apiKeyChecks[provider]).toEqual(expected.verification === 'verified' ? { accepted: 1, refused: 0 } : { accepted: 0, refused: 0 });

      const { status, token } = await read('acme', provider);
      expect(status).toBe(200);
      expect(token).toMatchObject({ accessToken: key.apiKey, authMode: 'api_key', tokenType: 'api_key', expiresAt: null });
      expect(token.apply).toEqual(expected.apply(key.apiKey, key.userEmail));
      expect(await acceptedBySandbox(provider, token.apply)).toBe(true);
    });

    if (expected.verification === 'verified') {
      it('refuses a key the provider does not know with 422 credential_rejected, storing nothing', async () => {
        const known = register(provider);
        const wrong = { ...known, apiKey: `${known.apiKey}x` };
        keysSeen.add(wrong.apiKey);
        const refused = await put('acme', provider, credentialBody(provider, wrong));
        expect(refused.status).toBe(422);
        expect(refused.body.error).toBe('credential_rejected');
        expect(refused.text).not.toContain(wrong.apiKey);
        expect(await rows()).toBe(0);
        expect(sandbox.stats().apiKeyChecks[provider].refused).toBe(1);
      });

      it('answers 503 provider_unavailable when the check cannot run, storing nothing', async () => {
        const key = register(provider);
        await sandbox.close();
        try {
          const unavailable = await put('acme', provider, credentialBody(provider, key));
          expect(unavailable.status).toBe(503);
          expect(unavailable.body.error).toBe('provider_unavailable');
          expect(await rows()).toBe(0);
        } finally {
          // The sandbox listens again on its own port, so the broker's settings still point at it.
          await restartSandboxOnSamePort();
        }
      });
    } else {
      it('stores a key it has no way to check, saying so (verification not_supported)', async () => {
        const stored = await put('acme', provider, credentialBody(provider, { apiKey: 'cai_key_never-registered', userEmail: '' }, { verify: true }));
        keysSeen.add('cai_key_never-registered');
        expect(stored.status).toBe(200);
        expect(stored.body.verification).toBe('not_supported');
      });
    }

    it('answers 400 for a missing key, storing nothing', async () => {
      const key = register(provider);
      const missing = await put('acme', provider, { ...credentialBody(provider, key), apiKey: undefined });
      expect(missing.status).toBe(400);
      expect(missing.body).toMatchObject({ error: 'validation_failed', message: expect.stringContaining('apiKey is required') });
      expect(await rows()).toBe(0);
    });

    it('with verify: false stores without asking the provider (skipped; not_supported where there is no check)', async () => {
      const key = register(provider);
      sandbox.resetStats();
      const stored = await put('acme', provider, credentialBody(provider, key, { verify: false }));
      expect(stored.status).toBe(200);
      expect(stored.body.verification).toBe(expected.verification === 'verified' ? 'skipped' : 'not_supported');
      expect(sandbox.stats().apiKeyChecks[provider]).toEqual({ accepted: 0, refused: 0 });
      expect((await read('acme', provider)).status).toBe(200);
    });

    it('past its expiresAt the key is needs_reauth (credential_expired) at once on read and in the admin view, and the sweep flags the row', async () => {
      const key = register(provider);
      const expiresAt = new Date(clock.nowMs() + HOUR_MS).toISOString();
      expect((await put('acme', provider, credentialBody(provider, key, { expiresAt }))).status).toBe(200);
      const before = await read('acme', provider);
      expect(before.status).toBe(200);
      expect(before.token.expiresAt).toBe(expiresAt);

      clock.advance(2 * HOUR_MS);
      const after = await read('acme', provider);
      expect(after.status).toBe(409);
      expect(after.body).toMatchObject({ error: 'needs_reauth', reason: 'credential_expired' });
      expect(after.text).not.toContain(key.apiKey);
      expect((await view('acme', provider)).body).toMatchObject({ status: 'needs_reauth', authMode: 'api_key', lastError: { code: 'credential_expired' } });

      await broker.app.get(RefreshSweeper).sweep();
      const [row] = await db.query(`SELECT status, last_error_code FROM connections WHERE account = 'acme'`);
      expect(row).toEqual({ status: 'needs_reauth', last_error_code: 'credential_expired' });
      const flagged = await read('acme', provider);
      expect(flagged.body).toMatchObject({ error: 'needs_reauth', reason: 'credential_expired' });
    });

    it('revoking erases the key locally (nothing to tell the provider), and reads answer 409 revoked', async () => {
      const key = register(provider);
      expect((await put('acme', provider, credentialBody(provider, key))).status).toBe(200);
      const revoked = await answer(await broker.call(`/admin/connections/acme/revoke?provider=${provider}`, { as: 'admin', method: 'POST' }));
      expect(revoked.status).toBe(200);
      expect(revoked.body).toMatchObject({ erasedLocally: true, atProvider: { accessToken: 'not_supported', refreshToken: 'not_stored' } });
      const [row] = await db.query(`SELECT status, auth_mode, credential_sealed FROM connections WHERE account = 'acme'`);
      expect(row).toEqual({ status: 'revoked', auth_mode: 'api_key', credential_sealed: null });
      const after = await read('acme', provider);
      expect(after.status).toBe(409);
      expect(after.body.error).toBe('revoked');
    });

    it('storing a key over an OAuth grant revokes the grant at the provider where it can, and replaces it', async () => {
      // An account no earlier test read: this replica learns of the connect by NOTIFY, not from its own write.
      const account = `oauth-${provider}`;
      await connectAccount(broker, account, provider);
      const oauth = await read(account, provider);
      expect(oauth.body).toMatchObject({ authMode: 'oauth2' });
      const key = register(provider);
      sandbox.resetStats();
      const stored = await put(account, provider, credentialBody(provider, key));
      expect(stored.status).toBe(200);
      const revocable = provider === 'copyai';
      expect(stored.body.replacedGrant).toEqual(
        revocable ? { accessToken: 'revoked', refreshToken: 'revoked', error: null } : { accessToken: 'not_supported', refreshToken: 'not_stored', error: null },
      );
      expect(sandbox.stats().revocations[provider]).toBe(revocable ? 2 : 0);
      // Copy.ai's grant is dead at the provider; the others have no revocation API.
      expect(await acceptedBySandbox(provider, oauth.token.apply)).toBe(!revocable);
      const now = await read(account, provider);
      expect(now.token).toMatchObject({ authMode: 'api_key', accessToken: key.apiKey });
      const [row] = await db.query(`SELECT auth_mode, access_token_sealed, refresh_token_sealed FROM connections WHERE account = $1`, [account]);
      expect(row).toEqual({ auth_mode: 'api_key', access_token_sealed: null, refresh_token_sealed: null });
    });
  });

  it('Copper: a key with the wrong owner email is refused (422), and the email is required (400)', async () => {
    const key = register('copper', 'u-2002');
    const wrongEmail = await put('acme', 'copper', { apiKey: key.apiKey, userEmail: 'someone-else@example.test' });
    expect(wrongEmail.status).toBe(422);
    expect(wrongEmail.body.error).toBe('credential_rejected');
    const noEmail = await put('acme', 'copper', { apiKey: key.apiKey });
    expect(noEmail.status).toBe(400);
    expect(noEmail.body.message).toContain('userEmail is required');
    expect(await rows()).toBe(0);
    expect((await put('acme', 'copper', { apiKey: key.apiKey, userEmail: key.userEmail })).status).toBe(200);
  });

  it('refuses a malformed body field by field without echoing the key, an email where none is taken, and a missing ?provider=', async () => {
    const refused = await put('acme', 'copyai', { apiKey: 'has spaces in it', userEmail: 'a@example.test', expiresAt: 'tomorrow', verify: 'yes', extra: 1 });
    expect(refused.status).toBe(400);
    expect(refused.body.message!.split('; ')).toEqual([
      'property extra should not exist',
      'apiKey must be 1 to 2048 printable characters without spaces',
      'userEmail should not be given: Copy.ai takes the key alone',
      'expiresAt must be an ISO 8601 date-time with a time zone, e.g. 2027-01-31T00:00:00Z',
      'verify must be true or false',
    ]);
    expect(refused.text).not.toContain('has spaces');
    const past = await put('acme', 'copyai', { apiKey: 'k', expiresAt: new Date(clock.nowMs() - 1000).toISOString() });
    expect(past.body.message).toBe('expiresAt is in the past: that key no longer works');
    const noProvider = await answer(
      await broker.call('/admin/connections/acme/credentials', { as: 'admin', method: 'PUT', headers: { 'content-type': 'application/json' }, body: '{"apiKey":"k"}' }),
    );
    expect(noProvider.status).toBe(400);
    const asService = await broker.call('/admin/connections/acme/credentials?provider=copyai', {
      as: 'service',
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: '{"apiKey":"k"}',
    });
    expect(asService.status).toBe(403);
    expect(await rows()).toBe(0);
  });

  it('audits every store, refusals included, without the key', async () => {
    const key = register('copernica');
    await put('acme', 'copernica', { apiKey: key.apiKey });
    await put('acme', 'copernica', { apiKey: `${key.apiKey}-wrong` });
    const audit = logs.entries().filter((e) => e.context === 'Audit' && e.action === 'credential.store');
    expect(audit.slice(-2).map((e) => ({ outcome: e.outcome, actor: e.actor, provider: e.provider }))).toEqual([
      { outcome: 'stored', actor: 'ops', provider: 'copernica' },
      { outcome: 'rejected', actor: 'ops', provider: 'copernica' },
    ]);
    expect(audit.slice(-2)[0].detail).toMatchObject({ verification: 'verified' });
  });

  it('keeps every key out of the database in plaintext and out of every log line', async () => {
    for (const provider of PROVIDERS) {
      const key = register(provider);
      expect((await put(`dump-${provider}`, provider, credentialBody(provider, key))).status).toBe(200);
      expect((await read(`dump-${provider}`, provider)).status).toBe(200);
    }
    const tables: Array<{ tablename: string }> = await db.query(`SELECT tablename FROM pg_tables WHERE schemaname = 'public'`);
    let dump = '';
    for (const { tablename } of tables) {
      const rows: Array<{ row: string }> = await db.query(`SELECT t::text AS row FROM "${tablename}" t`);
      dump += rows.map((r) => r.row).join('\n');
    }
    expect(dump).toContain('dump-copyai');
    const logText = logs.lines.join('\n');
    expect(logText.length).toBeGreaterThan(0);
    for (const key of keysSeen) {
      expect(dump).not.toContain(key);
      expect(logText).not.toContain(key);
    }
  });

  /** After a test closed the sandbox: a new one on the port the broker was configured with. */
  async function restartSandboxOnSamePort(): Promise<void> {
    const { startProviderSandbox } = await import('../../apps/provider-sandbox/src/provider-sandbox');
    const port = Number(new URL(sandbox.url).port);
    const fresh = await startProviderSandbox({ port, clock: () => clock.nowMs() });
    suite.sandbox = fresh;
    sandbox = fresh;
  }
});
