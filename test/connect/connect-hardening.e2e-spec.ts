/**
 * Faults of the connect flow, each against the real broker, Postgres and the sandbox providers:
 * a PKCE verifier that cannot be opened, a connect link that a HEAD (a link scanner) or a
 * page view must not use up, the confirmation that alone starts the flow, the binding cookie's
 * name and attributes, and what the user and the logs get when the provider sends an `error`.
 */
import { randomBytes } from 'node:crypto';
import { DataSource } from 'typeorm';
import { ProviderSandbox } from '../../apps/provider-sandbox/src/provider-sandbox';
import {
  answerAtProvider,
  connectUrlFor,
  dance,
  deliverCallback,
  onBroker,
  openConnectLink,
  startFlow,
  submitConfirmation,
} from '../support/connect-dance';
import { useBrokerSuite } from '../support/broker-suite';
import { captureLogs, TestBroker } from '../support/test-broker';

const RETURN_TO = 'http://localhost:5173/done';

/** Where a 302 to the product sends the browser: its query, as an object. */
function landing(response: Response): Record<string, string> {
  expect(response.status).toBe(302);
  const location = new URL(response.headers.get('location')!);
  expect(location.origin + location.pathname).toBe(RETURN_TO);
  return Object.fromEntries(location.searchParams);
}

describe('connect flow hardening (Copy.ai with PKCE)', () => {
  const logs = captureLogs();
  const suite = useBrokerSuite({ env: { COPYAI_USE_PKCE: 'true' }, logger: logs.logger });
  let sandbox: ProviderSandbox;
  let broker: TestBroker;
  let db: DataSource;
  beforeAll(() => ({ sandbox, broker, db } = suite));

  const count = async (table = 'connections'): Promise<number> => Number((await db.query(`SELECT count(*) FROM ${table}`))[0].count);
  const sessionUsed = async (): Promise<boolean> => (await db.query(`SELECT used_at FROM connect_sessions`))[0].used_at !== null;

  describe('a callback whose PKCE verifier cannot be opened', () => {
    it.each([
      ['sealed under a key the ring lacks', (sealed: string) => sealed.replace(/^v1\.[^.]+\./, 'v1.gone.')],
      ['tampered with', (sealed: string) => sealed.slice(0, -2) + (sealed.endsWith('AA') ? 'BB' : 'AA')],
      ['not a sealed value at all', () => 'garbage'],
    ])('%s: a state_invalid refusal, nothing stored, and the process keeps serving', async (_case, garble) => {
      const rejections: unknown[] = [];
      const onRejection = (reason: unknown): void => void rejections.push(reason);
      process.on('unhandledRejection', onRejection);
      try {
        const flow = await startFlow(broker, await connectUrlFor(broker, 'acme', 'copyai', RETURN_TO));
        expect(flow.authorizeUrl.searchParams.get('code_challenge_method')).toBe('S256');
        const answer = await answerAtProvider(flow.authorizeUrl);
        const [{ code_verifier_sealed: sealed }] = await db.query(`SELECT code_verifier_sealed FROM oauth_states`);
        expect(sealed).toMatch(/^v1\./);
        await db.query(`UPDATE oauth_states SET code_verifier_sealed = $1`, [garble(sealed as string)]);

        const response = await deliverCallback(broker, answer, flow.cookie, { signal: AbortSignal.timeout(10_000) });
        expect(landing(response)).toEqual({ status: 'error', error: 'state_invalid', account: 'acme', provider: 'copyai' });

        expect((await broker.call('/health/live')).status).toBe(200);
        await new Promise((resolve) => setImmediate(resolve));
        expect(rejections).toEqual([]);
        expect(await count()).toBe(0);
        expect(await count('oauth_states')).toBe(0);
        expect(sandbox.stats().tokenRequests.copyai.authorizationCode).toBe(0);
      } finally {
        process.off('unhandledRejection', onRejection);
      }
    });
  });

  describe('the connect link', () => {
    it('a HEAD (a link scanner or unfurler) uses nothing up: the user can still open it and connect', async () => {
      const url = await connectUrlFor(broker, 'acme', 'copyai', RETURN_TO);
      const head = await fetch(onBroker(broker, url), { method: 'HEAD', redirect: 'manual' });

      const page = await openConnectLink(broker, url);
      expect(page.html).toContain('You are connecting Copy.ai for');
      const start = await submitConfirmation(page);
      expect(start.status).toBe(302);
      expect(new URL(start.headers.get('location')!).origin).toBe(sandbox.url);
      expect(head.status).toBe(200);
      expect(await head.text()).toBe('');
    });

    it('opening it shows whose account is being connected and uses nothing up; only the confirmation does, once', async () => {
      const url = await connectUrlFor(broker, 'acme@tenant-7', 'copyai', RETURN_TO);
      const first = await openConnectLink(broker, url);
      const page = await openConnectLink(broker, url);
      for (const shown of [first, page]) {
        expect(shown.response.headers.get('content-type')).toContain('text/html');
        expect(shown.response.headers.get('cache-control')).toBe('no-store');
        expect(shown.response.headers.get('referrer-policy')).toBe('no-referrer');
        expect(shown.response.headers.get('content-security-policy')).toContain("default-src 'none'");
        expect(shown.response.headers.get('content-security-policy')).toContain("form-action 'self'");
        expect(shown.html).not.toMatch(/<script/i);
        expect(shown.html).toMatch(/You are connecting Copy\.ai for <code>acme@tenant-7<\/code>/);
        expect(shown.action.pathname).toBe('/connect/copyai');
        expect(shown.action.origin).toBe(broker.url);
      }
      expect(await sessionUsed()).toBe(false);
      expect(await count('oauth_states')).toBe(0);

      const start = await submitConfirmation(page);
      expect(start.status).toBe(302);
      const authorize = new URL(start.headers.get('location')!);
      expect(authorize.origin + authorize.pathname).toBe(sandbox.endpoints('copyai').authorizeUrl);
      expect(await sessionUsed()).toBe(true);

      const replay = await submitConfirmation(page);
      expect(replay.status).toBe(400);
      expect(await replay.text()).toContain('already used');
      expect(await count('oauth_states')).toBe(1);
    });

    it('the confirmation is refused without the page’s cookie, with another cookie or from another site, and the link stays usable', async () => {
      const url = await connectUrlFor(broker, 'acme', 'copyai', RETURN_TO);
      const page = await openConnectLink(broker, url);
      expect(page.cookie).toMatch(/^tb_confirm_copyai=[A-Za-z0-9_-]{43}$/);
      const attempts = [
        await submitConfirmation(page, { cookie: '' }),
        await submitConfirmation(page, { cookie: `tb_confirm_copyai=${randomBytes(32).toString('base64url')}` }),
        await submitConfirmation(page, { headers: { 'sec-fetch-site': 'cross-site' } }),
      ];
      for (const refused of attempts) {
        expect(refused.status).toBe(400);
        expect(refused.headers.get('location')).toBeNull();
        expect(await refused.text()).toContain('session_invalid');
      }
      expect(await sessionUsed()).toBe(false);
      expect(await count('oauth_states')).toBe(0);

      const start = await submitConfirmation(page);
      expect(start.status).toBe(302);
    });

    it('a bad or used-up link gets the failure page, HEAD and GET alike', async () => {
      const url = await connectUrlFor(broker, 'acme', 'copyai');
      const tampered = url.replace(/session=(.)/, (_m, c: string) => `session=${c === 'A' ? 'B' : 'A'}`);
      const bad = await fetch(onBroker(broker, tampered), { redirect: 'manual' });
      expect(bad.status).toBe(400);
      expect(await bad.text()).toContain('not valid');
      expect((await fetch(onBroker(broker, tampered), { method: 'HEAD', redirect: 'manual' })).status).toBe(400);

      await startFlow(broker, url);
      const used = await fetch(onBroker(broker, url), { redirect: 'manual' });
      expect(used.status).toBe(400);
      expect(await used.text()).toContain('already used');
    });

    it('binds the flow with an HttpOnly, SameSite=Lax cookie named for the provider (plain name over http)', async () => {
      const page = await openConnectLink(broker, await connectUrlFor(broker, 'acme', 'copyai'));
      const start = await submitConfirmation(page);
      const binding = start.headers.getSetCookie().find((c) => c.startsWith('tb_connect_copyai='));
      expect(binding).toMatch(/^tb_connect_copyai=[A-Za-z0-9_-]{43};/);
      expect(binding).toMatch(/; Path=\/connect\/copyai(;|$)/);
      expect(binding).toMatch(/; HttpOnly(;|$)/);
      expect(binding).toMatch(/; SameSite=Lax(;|$)/);
      expect(binding).not.toMatch(/; Secure/);
    });
  });

  describe('an error the provider sent', () => {
    it.each([
      ['server_error', 'server_error'],
      ['invalid_scope', 'invalid_scope'],
      ['Bad-Code!', undefined],
      ['x'.repeat(65), undefined],
    ])('%p: provider_error (providerError %p), logged at warn, nothing stored', async (error, shown) => {
      sandbox.configure('copyai', { authorizeError: error });
      logs.claimProcessLogger();
      const logStart = logs.lines.length;

      const result = await dance(broker, await connectUrlFor(broker, 'acme', 'copyai', RETURN_TO));
      expect(landing(result.final)).toEqual({
        status: 'error',
        error: 'provider_error',
        ...(shown ? { providerError: shown } : {}),
        account: 'acme',
        provider: 'copyai',
      });
      expect(await count()).toBe(0);
      expect(sandbox.stats().tokenRequests.copyai.authorizationCode).toBe(0);

      const lines = logs.lines.slice(logStart);
      const warned = lines.map((line) => JSON.parse(line) as { level: number; msg: string }).filter((l) => l.level === 40 && /copyai/.test(l.msg));
      expect(warned.map((l) => l.msg)).toEqual([expect.stringContaining(shown ?? 'not a plain error code')]);
      if (!shown) expect(lines.join('\n')).not.toContain(error);
    });

    it('access_denied stays access_denied', async () => {
      const result = await dance(broker, await connectUrlFor(broker, 'acme', 'copyai', RETURN_TO), { decision: 'deny' });
      expect(landing(result.final)).toEqual({ status: 'error', error: 'access_denied', account: 'acme', provider: 'copyai' });
    });

    it('Copper’s form POST carrying an error ends the same way', async () => {
      sandbox.configure('copper', { authorizeError: 'temporarily_unavailable' });
      const result = await dance(broker, await connectUrlFor(broker, 'acme', 'copper', RETURN_TO));
      expect(landing(result.final)).toMatchObject({ status: 'error', error: 'provider_error', providerError: 'temporarily_unavailable' });
    });

    it.each([
      ['invalid_scope', true],
      ['<b>Bad</b>', false],
    ])('without returnTo, the page names the provider’s code %p only when it is a plain code', async (error, named) => {
      sandbox.configure('copyai', { authorizeError: error });
      const result = await dance(broker, await connectUrlFor(broker, 'acme', 'copyai'));
      expect(result.final.status).toBe(502);
      expect(result.final.headers.get('content-type')).toContain('text/html');
      expect(result.finalBody).toContain('Could not connect to Copy.ai');
      expect(result.finalBody).toContain('<code>provider_error</code>');
      if (named) expect(result.finalBody).toContain('invalid_scope');
      else expect(result.finalBody).not.toMatch(/Bad|&#60;b/);
      expect(await count()).toBe(0);
    });
  });
});

describe('connect flow behind an https PUBLIC_URL', () => {
  const suite = useBrokerSuite({ env: { PUBLIC_URL: 'https://broker.example.test' } });
  let broker: TestBroker;
  let db: DataSource;
  beforeAll(() => ({ broker, db } = suite));

  it('the cookies are __Host- prefixed (Secure, Path=/, no Domain) and the dance completes, Copper’s bounce included', async () => {
    for (const provider of ['copyai', 'copper']) {
      const page = await openConnectLink(broker, await connectUrlFor(broker, `acme-${provider}`, provider, RETURN_TO));
      const confirm = page.response.headers.getSetCookie().find((c) => c.startsWith(`__Host-tb_confirm_${provider}=`));
      expect(confirm).toMatch(/; Path=\/(;|$)/);
      expect(confirm).toMatch(/; Secure(;|$)/);
      expect(confirm).not.toMatch(/; Domain=/i);

      const start = await submitConfirmation(page);
      expect(start.status).toBe(302);
      const binding = start.headers.getSetCookie().find((c) => c.startsWith(`__Host-tb_connect_${provider}=`));
      expect(binding).toMatch(new RegExp(`^__Host-tb_connect_${provider}=[A-Za-z0-9_-]{43};`));
      expect(binding).toMatch(/; Path=\/(;|$)/);
      expect(binding).toMatch(/; Secure(;|$)/);
      expect(binding).toMatch(/; HttpOnly(;|$)/);
      expect(binding).not.toMatch(/; Domain=/i);
      const cookie = binding!.split(';')[0];

      const answer = await answerAtProvider(new URL(start.headers.get('location')!));
      let final: Response;
      if (answer.method === 'POST') {
        // Cross-site, the browser sends no SameSite=Lax cookie: the broker bounces to its GET callback...
        const bounce = await deliverCallback(broker, answer, '');
        expect(bounce.status).toBe(200);
        const target = /url=([^"]+)"/.exec(await bounce.text())![1].replace(/&#38;|&amp;/g, '&');
        final = await fetch(new URL(target, broker.url), { redirect: 'manual', headers: { cookie } });
        // ...and with the cookie it finishes at once.
      } else {
        final = await deliverCallback(broker, answer, cookie);
      }
      expect(landing(final)).toEqual({ status: 'connected', account: `acme-${provider}`, provider });
      const cleared = final.headers.getSetCookie().find((c) => c.startsWith(`__Host-tb_connect_${provider}=`));
      expect(cleared).toMatch(/Max-Age=0/);
    }
    expect(Number((await db.query(`SELECT count(*) FROM connections WHERE status = 'active'`))[0].count)).toBe(2);
  });
});
