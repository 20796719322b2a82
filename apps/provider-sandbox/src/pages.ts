/**
 * The HTML the fake providers show a browser: the consent page, the auto-submitting callback
 * form (Copper's POST callback) and the error page for requests that cannot be redirected.
 * Every interpolated value is escaped; element ids are stable for the browser test.
 */
import { escapeHtml } from './http-kit';

function page(title: string, body: string): string {
  return (
    '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">' +
    `<meta name="viewport" content="width=device-width, initial-scale=1"><title>${escapeHtml(title)}</title>` +
    '<style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem}' +
    '.sandbox{color:#a33;font-size:.85rem}button{font-size:1rem;margin-right:.5rem;padding:.4rem 1.2rem}' +
    '.fake{border:2px dashed #a33;background:#fff4f4;color:#700;padding:.6rem .8rem;margin-bottom:1.5rem}</style>' +
    `</head><body>${body}<p class="sandbox">Provider sandbox: a fake for tests and demos, never for production.</p></body></html>\n`
  );
}

function hiddenInputs(fields: Record<string, string | undefined>): string {
  return Object.entries(fields)
    .filter((entry): entry is [string, string] => entry[1] !== undefined)
    .map(([name, value]) => `<input type="hidden" name="${escapeHtml(name)}" value="${escapeHtml(value)}">`)
    .join('\n');
}

export interface ConsentPageInput {
  providerName: string;
  decisionPath: string;
  clientId: string;
  scope: string | undefined;
  userName: string;
  userEmail: string;
  /** The authorization request, carried back to the decision endpoint. */
  fields: Record<string, string | undefined>;
}

/**
 * Where a person decides. It is the page a demo user lands on from a real-looking link, so it
 * says first and plainly that this is not the provider: no account of theirs is involved.
 */
export function consentPage(input: ConsentPageInput): string {
  const scope = input.scope ? `<code id="scope">${escapeHtml(input.scope)}</code>` : '<em id="scope">no particular scope</em>';
  const name = escapeHtml(input.providerName);
  return page(
    `Fake ${input.providerName} (provider sandbox): authorize access`,
    `<p class="fake" id="fake-notice" role="note"><strong>This is not ${name}.</strong> It is a fake ${name} sign-in, ` +
      `played by token-broker's provider sandbox for tests and demos: no real ${name} account is involved, nothing you ` +
      'do here reaches the real service, and the tokens it issues work nowhere else.</p>' +
      `<h1>${name} <small>(fake)</small></h1>` +
      `<p>Signed in as <strong id="user">${escapeHtml(input.userName)}</strong> (${escapeHtml(input.userEmail)}).</p>` +
      `<p>The application <code id="client-id">${escapeHtml(input.clientId)}</code> asks for access: ${scope}.</p>` +
      `<form method="post" action="${escapeHtml(input.decisionPath)}">\n${hiddenInputs(input.fields)}\n` +
      '<button id="allow" type="submit" name="decision" value="allow">Allow</button>' +
      '<button id="deny" type="submit" name="decision" value="deny">Deny</button>' +
      '</form>',
  );
}

/** A real cross-site form POST to the redirect URI, as Copper's callback is. */
export function autoPostPage(action: string, fields: Record<string, string | undefined>): string {
  return page(
    'Returning to the application',
    `<form id="callback" method="post" action="${escapeHtml(action)}">\n${hiddenInputs(fields)}\n` +
      '<noscript><button type="submit">Continue</button></noscript></form>' +
      "<script>document.getElementById('callback').submit();</script>",
  );
}

export function errorPage(title: string, message: string): string {
  return page(title, `<h1 id="error">${escapeHtml(title)}</h1><p>${escapeHtml(message)}</p>`);
}
