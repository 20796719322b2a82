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

function escape(value: string): string {
  return value.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function page(title: string, body: string, head = ''): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escape(title)}</title>${head}
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;color:#222}
h1{font-size:1.4rem}.ok{color:#1a7f37}.err{color:#b42318}code{background:#f3f3f3;padding:.1rem .3rem;border-radius:3px}</style>
</head><body>${body}</body></html>`;
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
