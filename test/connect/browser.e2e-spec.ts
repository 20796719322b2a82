/**
 * The connect dance in a real browser: headless Chromium (Debian's `chromium` package) clicks
 * through the sandbox consent page. The broker (http://localhost:<port>) and the sandbox
 * providers (http://127.0.0.1:<port>) are on different sites, so Copper's auto-submitted form
 * POST to the callback is truly cross-site and arrives without the SameSite=Lax binding cookie;
 * the broker must bounce it to its GET callback, where the cookie is sent.
 */
import { ProviderId, providerDefinition } from '@app/providers';
import { createServer, IncomingMessage, Server } from 'node:http';
import { AddressInfo } from 'node:net';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { DataSource } from 'typeorm';
import { DEFAULT_USER, ProviderSandbox, startProviderSandbox } from '../../apps/provider-sandbox/src/provider-sandbox';
import { launchChromium, ReturnApp, startReturnApp } from '../support/browser';
import { connectUrlFor, onBroker, openConnectLink } from '../support/connect-dance';
import { startTestBroker, TestBroker } from '../support/test-broker';
import { openTestDataSource, truncateAll } from '../support/test-database';

jest.setTimeout(30_000);

/** One request the broker received on a /connect path, seen from the server side. */
interface BrokerHit {
  method: string;
  path: string;
  /** Whether the request carried a non-empty tb_connect_<provider> binding cookie. */
  bindingCookie: boolean;
  secFetchSite: string | undefined;
}

describe('connect flow in headless Chromium (broker and providers on different sites)', () => {
  let sandbox: ProviderSandbox | undefined;
  let broker: TestBroker | undefined;
  let returnApp: ReturnApp | undefined;
  let db: DataSource | undefined;
  let browser: Browser | undefined;
  let context: BrowserContext | undefined;
  let page: Page;
  let hits: BrokerHit[] = [];
  let navigations: string[] = [];

  beforeAll(async () => {
    sandbox = await startProviderSandbox();
    returnApp = await startReturnApp();
    // The callback URL must name the broker's own port: learn it, then restart on it.
    const probe = await startTestBroker({ ...sandbox.env(), HOST: '127.0.0.1', PUBLIC_URL: 'http://localhost:1' });
    const port = new URL(probe.url).port;
    await probe.close();
    broker = await startTestBroker({ ...sandbox.env(), HOST: '127.0.0.1', PORT: port, PUBLIC_URL: `http://localhost:${port}` });
    broker.app.getHttpServer().prependListener('request', (req: IncomingMessage) => {
      const path = req.url ?? '';
      if (!path.startsWith('/connect/')) return;
      const provider = /^\/connect\/([a-z]+)/.exec(path)?.[1] ?? '';
      const cookie = req.headers.cookie ?? '';
      hits.push({
        method: req.method ?? '',
        path,
        bindingCookie: new RegExp(`(?:^|;\\s*)tb_connect_${provider}=[^;]`).test(cookie),
        secFetchSite: req.headers['sec-fetch-site'],
      });
    });
    db = await openTestDataSource();
    browser = await launchChromium();
  }, 60_000);

  afterAll(async () => {
    // Close everything, whatever failed: the browser first (it holds connections to the servers).
    const results = await Promise.allSettled([browser?.close()]);
    results.push(...(await Promise.allSettled([broker?.close(), sandbox?.close(), returnApp?.close(), db?.destroy()])));
    const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed.length > 0) throw new AggregateError(failed.map((r) => r.reason as unknown), 'closing the browser test fixtures failed');
  });

  beforeEach(async () => {
    await truncateAll(db!);
    sandbox!.reset();
    hits = [];
    navigations = [];
    context = await browser!.newContext();
    page = await context.newPage();
    page.setDefaultTimeout(15_000);
    page.on('framenavigated', (frame) => {
      if (frame === page.mainFrame()) navigations.push(frame.url());
    });
  });

  afterEach(async () => {
    await context?.close();
    context = undefined;
  });

  const trail = (): string =>
    `navigations:\n  ${navigations.join('\n  ')}\nbroker saw:\n  ${hits
      .map((h) => `${h.method} ${h.path} cookie=${h.bindingCookie} sec-fetch-site=${h.secFetchSite}`)
      .join('\n  ')}`;

  const row = async (account: string, provider: string) =>
    (await db!.query(`SELECT * FROM connections WHERE account = $1 AND provider = $2`, [account, provider]))[0];
  const count = async () => Number((await db!.query(`SELECT count(*) FROM connections`))[0].count);

  const bindingCookies = async (provider: string) => (await context!.cookies()).filter((c) => c.name === `tb_connect_${provider}`);

  /**
   * Opens the connect link, checks the broker's confirmation page and continues, checks the
   * consent page, clicks Allow or Deny and waits for `arrived`.
   */
  async function clickThrough(connectUrl: string, provider: string, decision: 'allow' | 'deny', arrived: () => Promise<unknown>): Promise<void> {
    expect(connectUrl).toMatch(new RegExp(`^${broker!.url.replace('127.0.0.1', 'localhost')}/connect/${provider}\\?session=`));
    await page.goto(connectUrl);

    // The link opens the broker's confirmation page, naming the account; nothing is used up yet.
    expect(page.url()).toBe(connectUrl);
    const [{ account, used_at: usedAt }] = await db!.query(`SELECT account, used_at FROM connect_sessions`);
    expect(usedAt).toBeNull();
    expect(await page.locator('#summary').innerText()).toBe(`You are connecting ${providerDefinition(provider as ProviderId).displayName} for ${account}.`);
    expect(await bindingCookies(provider)).toEqual([]);
    await Promise.all([page.waitForURL((url) => url.href.startsWith(`${sandbox!.url}/${provider}/`)), page.click('#continue')]);
    expect((await db!.query(`SELECT used_at FROM connect_sessions`))[0].used_at).not.toBeNull();
    expect(await page.locator('#user').textContent()).toBe(DEFAULT_USER.name);

    // The broker bound the flow to this browser with a SameSite=Lax cookie on its own site.
    const [cookie] = await bindingCookies(provider);
    expect(cookie).toMatchObject({ domain: 'localhost', path: `/connect/${provider}`, httpOnly: true, sameSite: 'Lax' });
    expect(cookie.value).not.toBe('');

    try {
      await Promise.all([arrived(), page.click(`#${decision}`)]);
    } catch (error) {
      throw new Error(`${(error as Error).message}\n${trail()}`);
    }
  }

  const landedOnReturnApp = () => page.waitForURL((url) => url.origin === returnApp!.origin, { waitUntil: 'load' });

  function landing(): Record<string, string> {
    const url = new URL(page.url());
    expect(url.origin + url.pathname).toBe(`${returnApp!.origin}/done`);
    return Object.fromEntries(url.searchParams);
  }

  /** Copper's callback, as the broker saw it: a cross-site POST without the cookie, bounced to a GET with it. */
  function expectBouncedCopperCallback(): void {
    const callbacks = hits.filter((h) => h.path.startsWith('/connect/copper/callback'));
    expect(callbacks.map((h) => ({ method: h.method, path: h.path.split('?')[0], bindingCookie: h.bindingCookie, secFetchSite: h.secFetchSite }))).toEqual([
      { method: 'POST', path: '/connect/copper/callback', bindingCookie: false, secFetchSite: 'cross-site' },
      { method: 'GET', path: '/connect/copper/callback', bindingCookie: true, secFetchSite: 'same-origin' },
    ]);
    expect(callbacks[1].path).toMatch(/\?code=cpr_ac_[^&]+&state=[A-Za-z0-9_-]{43}$/);
  }

  it('copper: allow → cross-site form POST → bounce → GET callback → back in the app, connected', async () => {
    const returnTo = `${returnApp!.origin}/done`;
    await clickThrough(await connectUrlFor(broker!, 'acme-copper', 'copper', returnTo), 'copper', 'allow', landedOnReturnApp);

    expect(landing()).toEqual({ status: 'connected', account: 'acme-copper', provider: 'copper' });
    expect(await page.locator('#param-status').textContent()).toBe('connected');
    expectBouncedCopperCallback();

    const stored = await row('acme-copper', 'copper');
    expect(stored).toBeDefined();
    expect(stored.status).toBe('active');
    expect(stored.access_token_sealed).toMatch(/^v1\./);
    expect(stored.identity).toMatchObject({ id: DEFAULT_USER.id, name: DEFAULT_USER.name, email: DEFAULT_USER.email });

    // The binding cookie is single-use: nothing usable is left in the jar.
    expect((await bindingCookies('copper')).filter((c) => c.value !== '')).toEqual([]);
  });

  it('copy.ai: allow → GET callback (redirect, cookie sent) → back in the app, connected', async () => {
    const returnTo = `${returnApp!.origin}/done`;
    await clickThrough(await connectUrlFor(broker!, 'acme-copyai', 'copyai', returnTo), 'copyai', 'allow', landedOnReturnApp);

    expect(landing()).toEqual({ status: 'connected', account: 'acme-copyai', provider: 'copyai' });
    const callbacks = hits.filter((h) => h.path.startsWith('/connect/copyai/callback'));
    expect(callbacks.map((h) => [h.method, h.bindingCookie])).toEqual([['GET', true]]);

    const stored = await row('acme-copyai', 'copyai');
    expect(stored).toBeDefined();
    expect(stored.status).toBe('active');
    expect(stored.access_token_sealed).toMatch(/^v1\./);
    expect(stored.refresh_token_sealed).toMatch(/^v1\./);
    expect((await bindingCookies('copyai')).filter((c) => c.value !== '')).toEqual([]);
  });

  it('copper: deny → back in the app with access_denied, nothing stored', async () => {
    const returnTo = `${returnApp!.origin}/done`;
    await clickThrough(await connectUrlFor(broker!, 'acme-copper', 'copper', returnTo), 'copper', 'deny', landedOnReturnApp);

    expect(landing()).toEqual({ status: 'error', error: 'access_denied', account: 'acme-copper', provider: 'copper' });
    const callbacks = hits.filter((h) => h.path.startsWith('/connect/copper/callback'));
    expect(callbacks.map((h) => [h.method, h.bindingCookie])).toEqual([
      ['POST', false],
      ['GET', true],
    ]);
    expect(await count()).toBe(0);
    expect(sandbox!.stats().tokenRequests.copper.authorizationCode).toBe(0);
    expect((await bindingCookies('copper')).filter((c) => c.value !== '')).toEqual([]);
  });

  it('copper without returnTo: ends on the broker’s “Connected to Copper” page', async () => {
    await clickThrough(await connectUrlFor(broker!, 'acme-copper', 'copper'), 'copper', 'allow', () =>
      page.locator('h1.ok, h1.err').waitFor(),
    );

    expect(new URL(page.url()).origin).toBe(broker!.url.replace('127.0.0.1', 'localhost'));
    expect(new URL(page.url()).pathname).toBe('/connect/copper/callback');
    expect(await page.title()).toBe('Connected to Copper');
    expect(await page.locator('h1').textContent()).toBe('Connected to Copper');
    expect(await page.locator('body').innerText()).toContain('The account acme-copper is now connected');
    expectBouncedCopperCallback();
    expect((await row('acme-copper', 'copper'))?.status).toBe('active');
    await page.screenshot({ path: '/tmp/connected.png' });
  });

  it('a form on another site cannot start a flow in this browser, even one holding a confirmation cookie', async () => {
    // The victim has opened a connect link of their own, so this browser holds a confirmation cookie.
    await page.goto(await connectUrlFor(broker!, 'acme-victim', 'copyai'));
    expect((await context!.cookies()).map((c) => c.name)).toContain('tb_confirm_copyai');

    // The attacker's own link and page fields, posted by an auto-submitting form on another site.
    const attackerPage = await openConnectLink(broker!, await connectUrlFor(broker!, 'mallory', 'copyai'));
    const action = onBroker({ url: broker!.url.replace('127.0.0.1', 'localhost'), call: broker!.call }, attackerPage.action).toString();
    const inputs = [...attackerPage.fields].map(([name, value]) => `<input type="hidden" name="${name}" value="${value}">`).join('');
    const attacker: Server = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(`<!doctype html><form id="f" method="post" action="${action}">${inputs}</form><script>document.getElementById('f').submit()</script>`);
    });
    await new Promise<void>((resolve) => attacker.listen(0, '127.0.0.1', resolve));
    try {
      await Promise.all([page.waitForURL((url) => url.href.startsWith(action), { waitUntil: 'load' }), page.goto(`http://127.0.0.1:${(attacker.address() as AddressInfo).port}/`)]);
    } finally {
      await new Promise<void>((resolve) => attacker.close(() => resolve()));
    }

    expect(await page.locator('h1.err').textContent()).toBe('Could not connect to Copy.ai');
    expect(await page.locator('body').innerText()).toContain('session_invalid');
    const posted = hits.filter((h) => h.method === 'POST' && h.path === '/connect/copyai');
    expect(posted.map((h) => h.secFetchSite)).toEqual(['cross-site']);
    const sessions: Array<{ account: string; used_at: Date | null }> = await db!.query(`SELECT account, used_at FROM connect_sessions ORDER BY account`);
    expect(sessions.map((s) => [s.account, s.used_at])).toEqual([
      ['acme-victim', null],
      ['mallory', null],
    ]);
    expect(Number((await db!.query(`SELECT count(*) FROM oauth_states`))[0].count)).toBe(0);
    expect(await bindingCookies('copyai')).toEqual([]);
  });
});
