/**
 * The end user's own way in with an API key, in headless Chromium: a connect link made with
 * authMode api_key opens the broker's form; a refused key shows the form again (never with the
 * key in it), the right one lands on the product's returnTo, a submission from another browser
 * stores nothing, and the link works once.
 */
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { DataSource } from 'typeorm';
import { ProviderSandbox, startProviderSandbox } from '../../apps/provider-sandbox/src/provider-sandbox';
import { launchChromium, ReturnApp, startReturnApp } from '../support/browser';
import { createConnectSession } from '../support/connect-dance';
import { startTestBroker, TestBroker } from '../support/test-broker';
import { openTestDataSource, truncateAll } from '../support/test-database';

jest.setTimeout(30_000);

describe('API key connect form in headless Chromium', () => {
  let sandbox: ProviderSandbox | undefined;
  let broker: TestBroker | undefined;
  let returnApp: ReturnApp | undefined;
  let db: DataSource | undefined;
  let browser: Browser | undefined;
  let context: BrowserContext | undefined;
  let page: Page;

  beforeAll(async () => {
    sandbox = await startProviderSandbox();
    returnApp = await startReturnApp();
    // The links must name the broker's own port: learn it, then restart on it.
    const probe = await startTestBroker({ ...sandbox.env(), HOST: '127.0.0.1', PUBLIC_URL: 'http://localhost:1' });
    const port = new URL(probe.url).port;
    await probe.close();
    broker = await startTestBroker({ ...sandbox.env(), HOST: '127.0.0.1', PORT: port, PUBLIC_URL: `http://localhost:${port}` });
    db = await openTestDataSource();
    browser = await launchChromium();
  }, 60_000);

  afterAll(async () => {
    const results = await Promise.allSettled([browser?.close()]);
    results.push(...(await Promise.allSettled([broker?.close(), sandbox?.close(), returnApp?.close(), db?.destroy()])));
    const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed.length > 0) throw new AggregateError(failed.map((r) => r.reason as unknown), 'closing the browser test fixtures failed');
  });

  beforeEach(async () => {
    await truncateAll(db!);
    sandbox!.reset();
    context = await browser!.newContext();
    page = await context.newPage();
    page.setDefaultTimeout(15_000);
  });

  afterEach(async () => {
    await context?.close();
    context = undefined;
  });

  const keyLink = async (account: string, provider: string): Promise<string> => {
    const response = await createConnectSession(broker!, { account, provider, returnTo: `${returnApp!.origin}/done`, authMode: 'api_key' });
    expect(response.status).toBe(201);
    return ((await response.json()) as { connectUrl: string }).connectUrl;
  };
  const rows = async () => db!.query(`SELECT account, provider, auth_mode, status FROM connections`);

  it('Copper: a refused key shows the form again without it; the right key lands on returnTo connected and is served', async () => {
    const { apiKey, userEmail } = sandbox!.registerApiKey('copper');
    const link = await keyLink('acme-42', 'copper');
    await page.goto(link);

    // The provider's name, whose account, where to find the key, and a label for each input.
    expect(await page.title()).toBe('Connect Copper with an API key');
    expect(await page.locator('#summary').innerText()).toBe('You are connecting Copper for acme-42 with an API key.');
    expect(await page.locator('#hint').innerText()).toContain('Settings');
    expect(await page.getByLabel('Copper API key').getAttribute('type')).toBe('password');
    expect(await page.getByLabel('Email of the Copper user who generated the key').getAttribute('type')).toBe('email');

    const wrongKey = `${apiKey}-wrong`;
    await page.getByLabel('Copper API key').fill(wrongKey);
    await page.getByLabel('Email of the Copper user who generated the key').fill(userEmail);
    await Promise.all([page.waitForURL((url) => url.pathname === '/connect/copper/key'), page.click('#connect')]);
    expect(await page.locator('#error').innerText()).toContain('Copper did not accept this key');
    expect(await page.content()).not.toContain(wrongKey);
    expect(await page.getByLabel('Copper API key').inputValue()).toBe('');
    expect(await page.getByLabel('Email of the Copper user who generated the key').inputValue()).toBe(userEmail);
    expect(await rows()).toEqual([]);

    await page.getByLabel('Copper API key').fill(apiKey);
    await Promise.all([page.waitForURL((url) => url.origin === returnApp!.origin), page.click('#connect')]);
    const landed = new URL(page.url());
    expect(Object.fromEntries(landed.searchParams)).toEqual({ status: 'connected', account: 'acme-42', provider: 'copper' });
    expect(await rows()).toEqual([{ account: 'acme-42', provider: 'copper', auth_mode: 'api_key', status: 'active' }]);
    const token = await broker!.call('/tokens/acme-42?provider=copper', { as: 'service' });
    expect(await token.json()).toMatchObject({
      authMode: 'api_key',
      accessToken: apiKey,
      apply: { headers: { 'X-PW-AccessToken': apiKey, 'X-PW-Application': 'developer_api', 'X-PW-UserEmail': userEmail }, query: {} },
    });
  });

  it('a submission from another browser stores nothing, and the link works only once', async () => {
    const { apiKey } = sandbox!.registerApiKey('copernica');
    const link = await keyLink('acme-42', 'copernica');
    await page.goto(link);
    const fields = Object.fromEntries(
      await page.locator('form input[type=hidden]').evaluateAll((inputs) => inputs.map((input) => [input.getAttribute('name'), input.getAttribute('value')])),
    ) as Record<string, string>;
    expect(Object.keys(fields).sort()).toEqual(['confirm', 'session']);

    // Another browser holds the link and this page's form token, but not this browser's cookie.
    const other = await browser!.newContext();
    try {
      const stolen = await other.request.post(`${new URL(link).origin}/connect/copernica/key`, { form: { ...fields, apiKey }, maxRedirects: 0 });
      expect(stolen.status()).toBe(400);
      expect(await stolen.text()).toContain('not sent from the connect page in this browser');
      expect(await rows()).toEqual([]);
    } finally {
      await other.close();
    }

    await page.getByLabel('Copernica API key').fill(apiKey);
    await Promise.all([page.waitForURL((url) => url.origin === returnApp!.origin), page.click('#connect')]);
    expect(new URL(page.url()).searchParams.get('status')).toBe('connected');

    // Used: opening it again says so, and posting its form again (same browser) stores nothing more.
    const again = await page.goto(link);
    expect(again?.status()).toBe(400);
    expect(await page.content()).toContain('already used');
    const replay = await context!.request.post(`${new URL(link).origin}/connect/copernica/key`, { form: { ...fields, apiKey }, maxRedirects: 0 });
    expect(replay.status()).toBe(400);
    expect(await rows()).toHaveLength(1);
  });
});
