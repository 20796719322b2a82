/**
 * Plays the browser's part of the connect dance over plain HTTP (no JavaScript needed: the
 * sandbox's `sandbox_decision` shortcut stands in for clicking Allow/Deny). Cookies are
 * carried by hand, as a browser would for the broker's origin.
 *
 * The dance in steps, for suites that need to interfere between them:
 * `openConnectLink` (the confirmation page) → `confirmConnect` (its button: the broker
 * redirects to the provider) → `answerAtProvider` (consent) → `deliverCallback` (back at the broker).
 */
import type { TestBroker } from './test-broker';

/** What the helpers need of a broker: an in-process TestBroker, or a child process wrapped alike. */
export type BrokerEndpoint = Pick<TestBroker, 'url' | 'call'>;

export interface DanceResult {
  /** The broker's final answer to the callback. */
  final: Response;
  finalBody: string;
  /** The authorize URL the broker redirected to. */
  authorizeUrl: URL;
  callbackUrl: URL | null;
  /** The browser-binding cookie as a `cookie` header value (`name=value`). */
  cookie: string;
}

/** The connect link's confirmation page, as the browser got it. */
export interface ConnectLinkPage {
  response: Response;
  html: string;
  /** The form's action, resolved against the broker. */
  action: URL;
  /** The form's hidden fields. */
  fields: URLSearchParams;
  /** The cookies the page set, as a `cookie` header value. */
  cookie: string;
}

/** Where the broker sent the browser after the confirmation: the provider, with the binding cookie set. */
export interface StartedFlow {
  authorizeUrl: URL;
  /** The browser-binding cookie as a `cookie` header value (`name=value`). */
  cookie: string;
}

/** How the provider sends the browser back: a redirect (GET) or Copper's auto-submitted form (POST). */
export interface ProviderAnswer {
  callbackUrl: URL;
  method: 'GET' | 'POST';
  form?: URLSearchParams;
}

export async function createConnectSession(broker: BrokerEndpoint, body: Record<string, unknown>): Promise<Response> {
  return broker.call('/connect-sessions', {
    as: 'service',
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
}

export async function connectUrlFor(broker: BrokerEndpoint, account: string, provider: string, returnTo?: string): Promise<string> {
  const response = await createConnectSession(broker, { account, provider, returnTo });
  if (response.status !== 201) throw new Error(`connect session: ${response.status} ${await response.text()}`);
  return ((await response.json()) as { connectUrl: string }).connectUrl;
}

/** Connects `account` to `provider` through the whole dance, the user allowing; fails unless the broker says it is connected. */
export async function connectAccount(broker: BrokerEndpoint, account: string, provider: string): Promise<void> {
  const result = await dance(broker, await connectUrlFor(broker, account, provider));
  if (!result.finalBody.includes('Connected to')) {
    throw new Error(`connecting ${account} to ${provider} ended with ${result.final.status}: ${result.finalBody.slice(0, 300)}`);
  }
}

/** The connect link as it points at the broker under test (PUBLIC_URL may name another host). */
export function onBroker(broker: BrokerEndpoint, url: string | URL): URL {
  const parsed = new URL(url);
  return new URL(parsed.pathname + parsed.search, broker.url);
}

/** `name=value; name2=value2` from a response's Set-Cookie headers (cleared cookies left out). */
export function cookiesSet(response: Response): string {
  return response.headers
    .getSetCookie()
    .map((header) => header.split(';')[0])
    .filter((pair) => !pair.endsWith('='))
    .join('; ');
}

/** Opens the connect link (a GET, as a browser does) and reads the confirmation page's form. */
export async function openConnectLink(broker: BrokerEndpoint, connectUrl: string, init: RequestInit = {}): Promise<ConnectLinkPage> {
  const response = await fetch(onBroker(broker, connectUrl), { redirect: 'manual', ...init });
  const html = await response.text();
  if (response.status !== 200) throw new Error(`connect link answered ${response.status}: ${html.slice(0, 300)}`);
  const form = /<form[^>]*method="post"[^>]*action="([^"]+)"[^>]*>([\s\S]*?)<\/form>/.exec(html);
  if (!form) throw new Error(`connect link answered without a confirmation form: ${html.slice(0, 300)}`);
  const fields = new URLSearchParams();
  for (const match of form[2].matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)"/g)) fields.set(match[1], unescapeHtml(match[2]));
  return { response, html, action: new URL(unescapeHtml(form[1]), onBroker(broker, connectUrl)), fields, cookie: cookiesSet(response) };
}

/** Submits the confirmation form (the user clicks Continue); the raw answer, normally a redirect to the provider. */
export async function submitConfirmation(page: ConnectLinkPage, options: { cookie?: string; fields?: URLSearchParams; headers?: Record<string, string> } = {}): Promise<Response> {
  const cookie = options.cookie ?? page.cookie;
  return fetch(page.action, {
    method: 'POST',
    redirect: 'manual',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...(cookie ? { cookie } : {}), ...options.headers },
    body: (options.fields ?? page.fields).toString(),
  });
}

/** Opens the link and confirms: the broker consumes the session and redirects to the provider. */
export async function startFlow(broker: BrokerEndpoint, connectUrl: string): Promise<StartedFlow> {
  const page = await openConnectLink(broker, connectUrl);
  const start = await submitConfirmation(page);
  if (start.status !== 302) throw new Error(`confirming the connect link answered ${start.status}: ${await start.text()}`);
  return { authorizeUrl: new URL(start.headers.get('location')!), cookie: cookiesSet(start) };
}

/** The user decides at the provider (through the sandbox's shortcut); where the provider sends the browser back. */
export async function answerAtProvider(authorizeUrl: URL, decision: 'allow' | 'deny' = 'allow'): Promise<ProviderAnswer> {
  const shortcut = new URL(authorizeUrl);
  shortcut.searchParams.set('sandbox_decision', decision);
  const atProvider = await fetch(shortcut, { redirect: 'manual' });
  if (atProvider.status === 302) return { callbackUrl: new URL(atProvider.headers.get('location')!), method: 'GET' };
  // Copper: an auto-submitting form POSTs code and state to the callback.
  const html = await atProvider.text();
  const action = /<form[^>]*action="([^"]+)"/.exec(html)?.[1];
  if (!action) throw new Error(`provider answered ${atProvider.status} without a redirect or form: ${html.slice(0, 300)}`);
  const form = new URLSearchParams();
  for (const match of html.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)"/g)) form.set(match[1], unescapeHtml(match[2]));
  return { callbackUrl: new URL(unescapeHtml(action)), method: 'POST', form };
}

/** The browser arrives back at the broker's callback, carrying `cookie`. */
export async function deliverCallback(broker: BrokerEndpoint, answer: ProviderAnswer, cookie: string, init: { signal?: AbortSignal } = {}): Promise<Response> {
  return fetch(onBroker(broker, answer.callbackUrl), {
    ...init,
    method: answer.method,
    redirect: 'manual',
    headers: { ...(cookie ? { cookie } : {}), ...(answer.form ? { 'content-type': 'application/x-www-form-urlencoded' } : {}) },
    body: answer.form?.toString(),
  });
}

/** Opens the connect link and follows the dance to the broker's callback answer. */
export async function dance(
  broker: BrokerEndpoint,
  connectUrl: string,
  options: {
    decision?: 'allow' | 'deny';
    tamper?: (callback: URL) => URL;
    cookie?: (cookie: string) => string;
    /** Runs after the provider answered and before the browser reaches the broker's callback. */
    beforeCallback?: () => Promise<void>;
  } = {},
): Promise<DanceResult> {
  const { authorizeUrl, cookie } = await startFlow(broker, connectUrl);
  const answer = await answerAtProvider(authorizeUrl, options.decision);
  if (options.tamper) {
    if (answer.form) {
      const tampered = options.tamper(new URL(`${answer.callbackUrl.toString()}?${answer.form.toString()}`));
      answer.form = tampered.searchParams;
    } else {
      answer.callbackUrl = options.tamper(answer.callbackUrl);
    }
  }
  await options.beforeCallback?.();
  const final = await deliverCallback(broker, answer, options.cookie ? options.cookie(cookie) : cookie);
  return { final, finalBody: await final.text(), authorizeUrl, callbackUrl: answer.callbackUrl, cookie };
}

function unescapeHtml(value: string): string {
  return value.replace(/&#(\d+);/g, (_m, code: string) => String.fromCharCode(Number(code))).replace(/&amp;/g, '&').replace(/&quot;/g, '"');
}
