/**
 * Plays the browser's part of the connect dance over plain HTTP (no JavaScript needed: the
 * sandbox's `sandbox_decision` shortcut stands in for clicking Allow/Deny). Cookies are
 * carried by hand, as a browser would for the broker's origin.
 */
import type { TestBroker } from './test-broker';

export interface DanceResult {
  /** The broker's final answer to the callback. */
  final: Response;
  finalBody: string;
  /** The authorize URL the broker redirected to. */
  authorizeUrl: URL;
  callbackUrl: URL | null;
  cookie: string;
}

export async function createConnectSession(broker: TestBroker, body: Record<string, unknown>): Promise<Response> {
  return broker.call('/connect-sessions', {
    as: 'service',
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
}

export async function connectUrlFor(broker: TestBroker, account: string, provider: string, returnTo?: string): Promise<string> {
  const response = await createConnectSession(broker, { account, provider, returnTo });
  if (response.status !== 201) throw new Error(`connect session: ${response.status} ${await response.text()}`);
  return ((await response.json()) as { connectUrl: string }).connectUrl;
}

/** Connects `account` to `provider` through the whole dance, the user allowing; fails unless the broker says it is connected. */
export async function connectAccount(broker: TestBroker, account: string, provider: string): Promise<void> {
  const result = await dance(broker, await connectUrlFor(broker, account, provider));
  if (!result.finalBody.includes('Connected to')) {
    throw new Error(`connecting ${account} to ${provider} ended with ${result.final.status}: ${result.finalBody.slice(0, 300)}`);
  }
}

/** Opens the connect link and follows the dance to the broker's callback answer. */
export async function dance(
  broker: TestBroker,
  connectUrl: string,
  options: {
    decision?: 'allow' | 'deny';
    tamper?: (callback: URL) => URL;
    cookie?: (cookie: string) => string;
    /** Runs after the provider answered and before the browser reaches the broker's callback. */
    beforeCallback?: () => Promise<void>;
  } = {},
): Promise<DanceResult> {
  const start = await fetch(connectUrl.replace(/^https?:\/\/[^/]+/, broker.url), { redirect: 'manual' });
  if (start.status !== 302) throw new Error(`connect link answered ${start.status}: ${await start.text()}`);
  const cookie = (start.headers.get('set-cookie') ?? '').split(';')[0];
  const authorizeUrl = new URL(start.headers.get('location')!);
  const shortcut = new URL(authorizeUrl);
  shortcut.searchParams.set('sandbox_decision', options.decision ?? 'allow');
  const atProvider = await fetch(shortcut, { redirect: 'manual' });

  let callbackUrl: URL;
  let method: 'GET' | 'POST' = 'GET';
  let form: URLSearchParams | undefined;
  if (atProvider.status === 302) {
    callbackUrl = new URL(atProvider.headers.get('location')!);
  } else {
    // Copper: an auto-submitting form POSTs code and state to the callback.
    const html = await atProvider.text();
    const action = /<form[^>]*action="([^"]+)"/.exec(html)?.[1];
    if (!action) throw new Error(`provider answered ${atProvider.status} without a redirect or form: ${html.slice(0, 300)}`);
    callbackUrl = new URL(action.replace(/&amp;/g, '&'));
    form = new URLSearchParams();
    for (const match of html.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)"/g)) form.set(match[1], match[2].replace(/&amp;/g, '&'));
    method = 'POST';
  }
  if (options.tamper) {
    if (form) {
      const tampered = options.tamper(new URL(`${callbackUrl.toString()}?${form.toString()}`));
      form = tampered.searchParams;
    } else {
      callbackUrl = options.tamper(callbackUrl);
    }
  }
  await options.beforeCallback?.();
  const sentCookie = options.cookie ? options.cookie(cookie) : cookie;
  const target = new URL(callbackUrl.pathname + callbackUrl.search, broker.url);
  const final = await fetch(target, {
    method,
    redirect: 'manual',
    headers: { ...(sentCookie ? { cookie: sentCookie } : {}), ...(form ? { 'content-type': 'application/x-www-form-urlencoded' } : {}) },
    body: form?.toString(),
  });
  return { final, finalBody: await final.text(), authorizeUrl, callbackUrl, cookie };
}
