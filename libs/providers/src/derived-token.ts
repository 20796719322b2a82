/**
 * Reading what a token-minting endpoint answers, and what a JWT says of its own expiry. Shared by
 * the definitions that derive tokens; no secret is ever put in an error from here.
 */

/** A compact JWS: three base64url parts. */
const COMPACT_JWT = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;
/** What a token may look like as plain text: printable, no spaces, a sane length. */
const PLAIN_TOKEN = /^[\x21-\x7e]{1,8192}$/;

/**
 * The token in an answer: the body itself as text, a JSON string, or a JSON object carrying the
 * token under one of `fields` (first found wins). null when none of these holds a usable token.
 */
export function readTokenFromAnswer(body: string, fields: readonly string[]): string | null {
  const text = body.trim();
  if (text === '') return null;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text) as unknown;
  } catch {
    return PLAIN_TOKEN.test(text) ? text : null;
  }
  if (typeof parsed === 'string') return PLAIN_TOKEN.test(parsed) ? parsed : null;
  if (typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)) {
    for (const field of fields) {
      const value = (parsed as Record<string, unknown>)[field];
      if (typeof value === 'string' && PLAIN_TOKEN.test(value)) return value;
    }
  }
  return null;
}

/**
 * When a JWT says it expires (its `exp` claim, RFC 7519 §4.1.4), read without checking its
 * signature: the broker only passes the token on, the API it is for checks it. null when the
 * value is not a compact JWT or carries no usable `exp`.
 */
export function jwtExpiry(token: string): Date | null {
  if (!COMPACT_JWT.test(token)) return null;
  try {
    const payload = JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString('utf8')) as unknown;
    const exp = typeof payload === 'object' && payload !== null ? (payload as Record<string, unknown>).exp : undefined;
    return typeof exp === 'number' && Number.isFinite(exp) && exp > 0 && exp < 1e11 ? new Date(exp * 1000) : null;
  } catch {
    return null;
  }
}
