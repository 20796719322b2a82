/**
 * The small HTML pages an end user may see from the connect flow. No script, no external
 * assets; every value is escaped. Served with a strict CSP and no referrer.
 */
export const PAGE_HEADERS: Record<string, string> = {
  'content-type': 'text/html; charset=utf-8',
  'cache-control': 'no-store',
  'referrer-policy': 'no-referrer',
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
};

/**
 * The confirmation page's headers. Browsers apply `form-action` to the redirects that follow a
 * form submission too, so the provider's authorize origin is allowed beside our own.
 */
export function confirmPageHeaders(authorizeUrl: string): Record<string, string> {
  return {
    ...PAGE_HEADERS,
    'content-security-policy': `default-src 'none'; style-src 'unsafe-inline'; form-action 'self' ${new URL(authorizeUrl).origin}; frame-ancestors 'none'`,
  };
}

/**
 * The API key form's headers. Its submission ends in a redirect to the product's returnTo, and
 * browsers hold that redirect to `form-action` too: the returnTo origin is allowed beside our own.
 */
export function apiKeyPageHeaders(returnTo: string | null): Record<string, string> {
  const target = returnTo ? ` ${new URL(returnTo).origin}` : '';
  return { ...PAGE_HEADERS, 'content-security-policy': `default-src 'none'; style-src 'unsafe-inline'; form-action 'self'${target}; frame-ancestors 'none'` };
}

function escape(value: string): string {
  return value.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function page(title: string, body: string, head = ''): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escape(title)}</title>${head}
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;color:#222}
h1{font-size:1.4rem}.ok{color:#1a7f37}.err{color:#b42318}code{background:#f3f3f3;padding:.1rem .3rem;border-radius:3px}
button{font:inherit;padding:.5rem 1.2rem;cursor:pointer}input{font:inherit;padding:.3rem}label{font-weight:600}</style>
</head><body>${body}</body></html>`;
}

/**
 * What the connect link opens: who is being connected, and a button that starts the flow. Only
 * the form's POST uses the link up, so a HEAD or a preview fetch by a link scanner does not, and
 * a user sent someone else's link sees whose account it would connect before anything happens.
 */
export function confirmPage(input: { providerName: string; account: string; action: string; fields: Record<string, string> }): string {
  const hidden = Object.entries(input.fields)
    .map(([name, value]) => `<input type="hidden" name="${escape(name)}" value="${escape(value)}">`)
    .join('');
  return page(
    `Connect ${input.providerName}`,
    `<h1>Connect ${escape(input.providerName)}</h1>
<p id="summary">You are connecting ${escape(input.providerName)} for <code>${escape(input.account)}</code>.</p>
<p>Continue only if you asked for this: the application that sent you here will act for that account with access to your ${escape(input.providerName)} data. If you did not expect it, close this window.</p>
<form method="post" action="${escape(input.action)}">${hidden}<button id="continue" type="submit">Continue to ${escape(input.providerName)}</button></form>`,
  );
}

export interface ApiKeyPageInput {
  providerName: string;
  account: string;
  /** Where the provider's keys are found (the provider definition's hint). */
  hint: string;
  action: string;
  /** Hidden fields: the session and the form token. */
  fields: Record<string, string>;
  /** Whether the provider wants the email of the key's owner beside it. */
  askEmail: boolean;
  /** The email given last time, to fill in again (never the key). */
  userEmail?: string;
  /** Why the last attempt did not go through. */
  error?: string;
}

/**
 * The end user's own way to connect with an API key: a form asking for exactly what the
 * provider needs, posted to the broker itself. A key is never written into the page, not even
 * after it was refused; the email (not a secret) is kept so it need not be typed again.
 */
export function apiKeyPage(input: ApiKeyPageInput): string {
  const hidden = Object.entries(input.fields)
    .map(([name, value]) => `<input type="hidden" name="${escape(name)}" value="${escape(value)}">`)
    .join('');
  const name = escape(input.providerName);
  const error = input.error ? `<p class="err" id="error" role="alert">${escape(input.error)}</p>` : '';
  const describedBy = input.error ? 'hint error' : 'hint';
  const email = input.askEmail
    ? `<p><label for="userEmail">Email of the ${name} user who generated the key</label><br>` +
      `<input id="userEmail" name="userEmail" type="email" required autocomplete="email" maxlength="320" size="40" value="${escape(input.userEmail ?? '')}"></p>`
    : '';
  return page(
    `Connect ${input.providerName} with an API key`,
    `<h1>Connect ${name}</h1>
<p id="summary">You are connecting ${name} for <code>${escape(input.account)}</code> with an API key.</p>
<p id="hint">${escape(input.hint)}</p>${error}
<form method="post" action="${escape(input.action)}">${hidden}
<p><label for="apiKey">${name} API key</label><br><input id="apiKey" name="apiKey" type="password" required autocomplete="off" spellcheck="false" maxlength="2048" size="40" aria-describedby="${describedBy}"></p>${email}
<button id="connect" type="submit">Connect ${name}</button></form>
<p>The key is checked with ${name} and stored encrypted; it is not shown again. Continue only if you asked for this.</p>`,
  );
}

export function connectedPage(providerName: string, account: string): string {
  return page(
    `Connected to ${providerName}`,
    `<h1 class="ok">Connected to ${escape(providerName)}</h1>
<p>The account <code>${escape(account)}</code> is now connected. You can close this window.</p>`,
  );
}

export function failedPage(providerName: string, code: string, message: string): string {
  return page(
    `Could not connect to ${providerName}`,
    `<h1 class="err">Could not connect to ${escape(providerName)}</h1>
<p>${escape(message)}</p>
<p>Nothing was stored. Start again from the application that sent you here (error <code>${escape(code)}</code>).</p>`,
  );
}

/**
 * Copper posts its callback cross-site, and browsers do not send a SameSite=Lax cookie with a
 * cross-site POST. This page hands the same parameters to our GET callback, a same-site
 * navigation that does carry the browser-binding cookie. No script is needed.
 */
export function callbackBouncePage(target: string): string {
  return page(
    'Finishing sign-in…',
    `<p>Finishing sign-in… <a href="${escape(target)}">Continue</a> if nothing happens.</p>`,
    `<meta http-equiv="refresh" content="0;url=${escape(target)}">`,
  );
}
