/**
 * The net under "no secret in a log line" (guarantee 2): the broker never logs a token on
 * purpose, and whatever object reaches the logger anyway (an error carrying its request's
 * headers, a provider answer, a request body) has its secrets replaced by "[redacted]" at any
 * depth before it is written.
 *
 * pino's own `redact` paths cannot say "at any depth" (no recursive wildcard), and a `*.code` path
 * would also hide every error code (ECONNREFUSED, invalid_grant), so the walk is ours (see
 * docs/decisions/0003-pino-without-nestjs-pino.md): by key name, with `code` censored only where
 * it is an OAuth authorization code (inside a request's query, body or params). It copies only
 * the objects on the way to something it censors; a line with no secret (the per-request line,
 * most lines) is walked and written as it was, not copied.
 */
import { stdSerializers } from 'pino';

export const REDACTED = '[redacted]';

/**
 * Keys whose value is always censored, compared in lower case without `-` and `_`
 * (`access_token`, `accessToken` and `Access-Token` are one entry).
 */
export const REDACTED_KEYS: ReadonlyArray<string> = [
  'accesstoken',
  'refreshtoken',
  'idtoken',
  'token',
  'jwt',
  'clientsecret',
  'secret',
  'password',
  'codeverifier',
  'authorization',
  'proxyauthorization',
  'cookie',
  'setcookie',
  'apikey',
  'xapikey',
  'xcopyaiapikey',
  'xpwaccesstoken',
  'privatekey',
];

/** Where a `code` field is the OAuth authorization code (a callback's query or form body), not an error code. */
const REQUEST_INPUT_KEYS: ReadonlySet<string> = new Set(['query', 'body', 'params', 'form', 'searchparams', 'payload']);

/**
 * Past this depth a value is printed as "[Object]" / "[Array]": no log line of ours nests this
 * deep, and a secret cannot hide below the walk.
 */
const MAX_DEPTH = 10;

const redactedKeys: ReadonlySet<string> = new Set(REDACTED_KEYS);

/** Key → normalised form, memoised: log lines use a small, fixed set of field names. */
const normalised = new Map<string, string>();

function normalise(key: string): string {
  let value = normalised.get(key);
  if (value === undefined) {
    value = key.toLowerCase().replace(/[-_]/g, '');
    if (normalised.size >= 5_000) normalised.clear();
    normalised.set(key, value);
  }
  return value;
}

function censors(key: string, parentKey: string | undefined): boolean {
  const name = normalise(key);
  if (redactedKeys.has(name)) return true;
  return name === 'code' && parentKey !== undefined && REQUEST_INPUT_KEYS.has(normalise(parentKey));
}

/**
 * `value` with every secret-named field censored, at any depth. Returns `value` itself when
 * there is nothing to censor; never changes the caller's objects. Errors are walked in the
 * form pino prints them (type, message, stack and their own fields).
 */
export function redactSecrets(value: unknown): unknown {
  return walk(value, undefined, [], 0);
}

function walk(value: unknown, parentKey: string | undefined, ancestors: object[], depth: number): unknown {
  if (typeof value !== 'object' || value === null) return value;
  if (ArrayBuffer.isView(value) || value instanceof Date) return value;
  if (ancestors.includes(value)) return '[Circular]';
  if (depth >= MAX_DEPTH) return Array.isArray(value) ? '[Array]' : '[Object]';
  let source: object = value;
  if (value instanceof Error) {
    source = stdSerializers.err(value);
  } else if (typeof (value as { toJSON?: unknown }).toJSON === 'function') {
    // What JSON.stringify would print (AppConfig's harmless view, for one).
    const json: unknown = (value as { toJSON: () => unknown }).toJSON();
    if (typeof json !== 'object' || json === null) return json;
    source = json;
  }
  ancestors.push(value);
  try {
    if (Array.isArray(source)) {
      let copy: unknown[] | undefined;
      for (let i = 0; i < source.length; i++) {
        const item: unknown = source[i];
        const walked = walk(item, parentKey, ancestors, depth + 1);
        if (walked !== item) (copy ??= source.slice())[i] = walked;
      }
      return copy ?? source;
    }
    let copy: Record<string, unknown> | undefined;
    const record = source as Record<string, unknown>;
    for (const key of Object.keys(record)) {
      const item = record[key];
      const walked = censors(key, parentKey) ? (item === undefined ? item : REDACTED) : walk(item, key, ancestors, depth + 1);
      if (walked !== item) (copy ??= { ...record })[key] = walked;
    }
    return copy ?? source;
  } finally {
    ancestors.pop();
  }
}

/**
 * The pino log formatter: walks every field of the line but `err`, which pino serializes after
 * this runs and which redactedErrorSerializer walks instead (so it keeps its type, message and
 * stack).
 */
export function redactLogFields(fields: Record<string, unknown>): Record<string, unknown> {
  let copy: Record<string, unknown> | undefined;
  for (const key of Object.keys(fields)) {
    if (key === 'err') continue;
    const item = fields[key];
    const walked = censors(key, undefined) ? REDACTED : walk(item, key, [], 1);
    if (walked !== item) (copy ??= { ...fields })[key] = walked;
  }
  return copy ?? fields;
}

/** pino's `err` serializer with the walk applied to what it produces. */
export function redactedErrorSerializer(err: unknown): unknown {
  return walk(err, 'err', [], 0);
}
