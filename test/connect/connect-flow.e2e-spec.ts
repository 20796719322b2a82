import { DataSource } from 'typeorm';
import { ProviderSandbox } from '../../apps/provider-sandbox/src/provider-sandbox';
import { connectUrlFor, createConnectSession, dance, startFlow } from '../support/connect-dance';
import { useBrokerSuite } from '../support/broker-suite';
import { TestBroker } from '../support/test-broker';

describe('connect flow against the sandbox providers', () => {
  const suite = useBrokerSuite();
  let sandbox: ProviderSandbox;
  let broker: TestBroker;
  let db: DataSource;
  beforeAll(() => ({ sandbox, broker, db } = suite));

  const row = async (account: string, provider: string) =>
    (await db.query(`SELECT * FROM connections WHERE account = $1 AND provider = $2`, [account, provider]))[0];

  it.each([
    ['copyai', { id: expect.any(String) }],
    ['copper', { id: 'u-1001', email: expect.stringContaining('@') }],
    ['copernica', { id: 'u-1001', company: expect.any(String) }],
  ])('%s: full dance ends with a sealed row and its identity', async (provider, identity) => {
    const returnTo = 'http://localhost:5173/done';
    const result = await dance(broker, await connectUrlFor(broker, `acct-${provider}`, provider, returnTo));
    expect(result.final.status).toBe(302);
    const location = new URL(result.final.headers.get('location')!);
    expect(location.origin + location.pathname).toBe(returnTo);
    expect(Object.fromEntries(location.searchParams)).toEqual({ status: 'connected', account: `acct-${provider}`, provider });
    const stored = await row(`acct-${provider}`, provider);
    expect(stored.status).toBe('active');
    expect(stored.access_token_sealed).toMatch(/^v1\./);
    if (provider !== 'copyai') expect(stored.identity).toMatchObject(identity);
    expect(JSON.stringify(stored)).not.toMatch(/cai_at_|cpr_at_|cpn_at_/);
  });

  it('copyai: stores the refresh token and an expiry, and schedules a refresh before it', async () => {
    await dance(broker, await connectUrlFor(broker, 'acme', 'copyai'));
    const stored = await row('acme', 'copyai');
    expect(stored.refresh_token_sealed).toMatch(/^v1\./);
    expect(stored.expires_at).toBeInstanceOf(Date);
    expect(stored.next_refresh_at.getTime()).toBeLessThan(stored.expires_at.getTime());
  });

  it('copernica: state is long enough for Copernica and the token never expires', async () => {
    const result = await dance(broker, await connectUrlFor(broker, 'acme', 'copernica'));
    expect(result.authorizeUrl.searchParams.get('state')!.length).toBeGreaterThanOrEqual(32);
    const stored = await row('acme', 'copernica');
    expect(stored.expires_at).toBeNull();
    expect(stored.next_refresh_at).toBeNull();
  });

  it('without returnTo, shows a small page', async () => {
    const result = await dance(broker, await connectUrlFor(broker, 'acme', 'copyai'));
    expect(result.final.status).toBe(200);
    expect(result.final.headers.get('content-type')).toContain('text/html');
    expect(result.finalBody).toContain('Connected to Copy.ai');
  });

  it('reconnecting replaces tokens and clears needs_reauth', async () => {
    await dance(broker, await connectUrlFor(broker, 'acme', 'copyai'));
    const first = await row('acme', 'copyai');
    await db.query(`UPDATE connections SET status = 'needs_reauth' WHERE id = $1`, [first.id]);
    await dance(broker, await connectUrlFor(broker, 'acme', 'copyai'));
    const second = await row('acme', 'copyai');
    expect(second.id).toBe(first.id);
    expect(second.status).toBe('active');
    expect(second.access_token_sealed).not.toBe(first.access_token_sealed);
  });

  describe('refusals store nothing and say why', () => {
    const count = async () => Number((await db.query(`SELECT count(*) FROM connections`))[0].count);

    it('a replayed state', async () => {
      const first = await dance(broker, await connectUrlFor(broker, 'acme', 'copyai'));
      await db.query(`DELETE FROM connections`);
      const replay = await fetch(new URL(first.callbackUrl!.pathname + first.callbackUrl!.search, broker.url), {
        redirect: 'manual',
        headers: { cookie: first.cookie },
      });
      expect(replay.status).toBe(400);
      expect(await replay.text()).toContain('already completed');
      expect(await count()).toBe(0);
    });

    it('an expired state', async () => {
      const result = await dance(broker, await connectUrlFor(broker, 'acme', 'copyai', 'http://localhost:5173/done'), {
        // The user lingered at the provider for more than 10 minutes.
        beforeCallback: async () => {
          await db.query(`UPDATE oauth_states SET expires_at = now() - interval '1 second'`);
        },
      });
      expect(result.final.status).toBe(302);
      const location = new URL(result.final.headers.get('location')!);
      expect(Object.fromEntries(location.searchParams)).toMatchObject({ status: 'error', error: 'state_invalid' });
      expect(await count()).toBe(0);
      expect(sandbox.stats().tokenRequests.copyai.authorizationCode).toBe(0);
    });

    it('a state from another provider’s flow', async () => {
      const result = await dance(broker, await connectUrlFor(broker, 'acme', 'copyai'), {
        tamper: (callback) => new URL(callback.toString().replace('/connect/copyai/', '/connect/copernica/')),
      });
      expect(result.final.status).toBe(400);
      expect(result.finalBody).toMatch(/another provider|another browser/);
      expect(await count()).toBe(0);
    });

    it('a callback from a different browser (no binding cookie)', async () => {
      const result = await dance(broker, await connectUrlFor(broker, 'acme', 'copyai', 'http://localhost:5173/done'), { cookie: () => '' });
      expect(result.final.status).toBe(302);
      const location = new URL(result.final.headers.get('location')!);
      expect(location.searchParams.get('status')).toBe('error');
      expect(location.searchParams.get('error')).toBe('state_invalid');
      expect(await count()).toBe(0);
    });

    it('a tampered session token', async () => {
      const url = await connectUrlFor(broker, 'acme', 'copyai');
      const tampered = url.replace(/session=(.)/, (_m, c: string) => `session=${c === 'A' ? 'B' : 'A'}`);
      const response = await fetch(tampered.replace(/^https?:\/\/[^/]+/, broker.url), { redirect: 'manual' });
      expect(response.status).toBe(400);
      expect(await response.text()).toContain('not valid');
    });

    it('a session link used twice', async () => {
      const url = await connectUrlFor(broker, 'acme', 'copyai');
      await startFlow(broker, url);
      const again = await fetch(url.replace(/^https?:\/\/[^/]+/, broker.url), { redirect: 'manual' });
      expect(again.status).toBe(400);
      expect(await again.text()).toContain('already used');
    });

    it('returnTo on a foreign origin', async () => {
      const response = await createConnectSession(broker, { account: 'acme', provider: 'copyai', returnTo: 'https://evil.example/steal' });
      expect(response.status).toBe(400);
      expect(await response.json()).toMatchObject({ error: 'return_to_not_allowed' });
    });

    it('the user declines at the provider (query and Copper POST body)', async () => {
      for (const provider of ['copyai', 'copper']) {
        const result = await dance(broker, await connectUrlFor(broker, `acme-${provider}`, provider, 'http://localhost:5173/done'), { decision: 'deny' });
        // Copper's POST without the cookie bounces to the GET callback first.
        const final =
          result.final.status === 200 && result.finalBody.includes('Finishing sign-in')
            ? await fetch(new URL(/url=([^"]+)"/.exec(result.finalBody)![1].replace(/&amp;/g, '&'), broker.url), {
                redirect: 'manual',
                headers: { cookie: result.cookie },
              })
            : result.final;
        expect(final.status).toBe(302);
        const location = new URL(final.headers.get('location')!);
        expect(location.searchParams.get('status')).toBe('error');
        expect(location.searchParams.get('error')).toBe('access_denied');
      }
      expect(await count()).toBe(0);
    });

    it('bad input to POST /connect-sessions', async () => {
      const cases: Array<[Record<string, unknown>, string]> = [
        [{ account: 'bad account!', provider: 'copyai' }, 'invalid_account'],
        [{ account: 'acme', provider: 'dropbox' }, 'provider_unknown'],
        [{ provider: 'copyai' }, 'validation_failed'],
      ];
      for (const [body, error] of cases) {
        const response = await createConnectSession(broker, body);
        expect(response.status).toBe(400);
        expect(await response.json()).toMatchObject({ error });
      }
    });
  });
});
