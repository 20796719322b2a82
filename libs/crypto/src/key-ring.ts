/**
 * The set of token-encryption keys, parsed from `TOKEN_ENCRYPTION_KEYS` (`kid:base64key,...`).
 * The first key seals new values; every key can open values sealed under it, which is what
 * lets keys rotate online.
 *
 * Key material never leaves this file except as a `KeyObject` handed to the cipher: no error
 * message, `toString`, `toJSON` or `util.inspect` of a ring shows a key.
 */
import { createSecretKey, KeyObject, randomBytes } from 'node:crypto';
import { inspect } from 'node:util';

export const KEY_ID_PATTERN = /^[A-Za-z0-9_-]{1,32}$/;
export const KEY_BYTES = 32;

// Standard or URL-safe alphabet, optional padding: people paste keys from `openssl rand -base64`
// and from base64url tools alike, and Buffer decodes both. Anything else would be silently
// skipped by Buffer.from, so reject it up front instead of decoding to a surprising length.
const BASE64_PATTERN = /^[A-Za-z0-9+/_-]+={0,2}$/;

export class KeyRingError extends Error {
  override readonly name = 'KeyRingError';

  constructor(readonly problems: readonly string[]) {
    super(`Invalid key ring: ${problems.join('; ')}`);
  }
}

export type KeyRingParseResult =
  | { ring: KeyRing; problems: [] }
  | { ring: undefined; problems: string[] };

/**
 * Parses a key-ring spec and reports every problem in one pass, so config validation can list
 * them all at once. `ring` is set exactly when `problems` is empty.
 */
export function parseKeyRingSpec(spec: string): KeyRingParseResult {
  return KeyRing.tryParse(spec);
}

function collectKeys(spec: string): { keys: Map<string, KeyObject>; problems: string[] } {
  const problems: string[] = [];
  const keys = new Map<string, KeyObject>();

  if (spec.trim() === '') {
    return { keys, problems: ['no keys given (expected "kid:base64key,...")'] };
  }

  spec.split(',').forEach((rawEntry, index) => {
    const where = `entry ${index + 1}`;
    const entry = rawEntry.trim();
    if (entry === '') {
      problems.push(`${where} is empty`);
      return;
    }
    const colon = entry.indexOf(':');
    if (colon < 0) {
      // Without a separator the entry may well be a bare key, so it is not echoed.
      problems.push(`${where} has no "kid:" prefix (expected "kid:base64key")`);
      return;
    }
    const kid = entry.slice(0, colon).trim();
    const encoded = entry.slice(colon + 1).trim();

    // An invalid kid is not echoed either: a mangled spec can shift key material into it.
    const kidOk = KEY_ID_PATTERN.test(kid);
    const label = kidOk ? `${where} (kid "${kid}")` : where;
    if (!kidOk) {
      problems.push(`${where}: key id must match ${KEY_ID_PATTERN.source} (got ${kid.length} characters)`);
    } else if (keys.has(kid)) {
      problems.push(`${label}: duplicate key id`);
    }

    const key = decodeKey(encoded);
    if (typeof key === 'string') {
      problems.push(`${label}: ${key}`);
      return;
    }
    if (kidOk && !keys.has(kid)) {
      keys.set(kid, createSecretKey(key));
    }
    // createSecretKey copied the bytes; do not leave a second copy lying around in the heap.
    key.fill(0);
  });

  return { keys, problems };
}

/** Returns the decoded key, or a description of what is wrong with it (never the key itself). */
function decodeKey(encoded: string): Buffer | string {
  if (encoded === '') {
    return 'key is empty';
  }
  if (!BASE64_PATTERN.test(encoded)) {
    return 'key is not valid base64';
  }
  const key = Buffer.from(encoded, 'base64');
  if (key.length !== KEY_BYTES) {
    const length = key.length;
    key.fill(0);
    return `key must decode to ${KEY_BYTES} bytes, got ${length}`;
  }
  return key;
}

export class KeyRing {
  // A true private field: util.inspect and JSON.stringify cannot reach it, unlike a TS `private`.
  readonly #keys: ReadonlyMap<string, KeyObject>;
  readonly activeKid: string;
  readonly kids: readonly string[];

  private constructor(keys: ReadonlyMap<string, KeyObject>) {
    this.#keys = keys;
    this.kids = Object.freeze([...keys.keys()]);
    this.activeKid = this.kids[0];
  }

  /** @throws KeyRingError listing every problem in the spec. */
  static parse(spec: string): KeyRing {
    const result = KeyRing.tryParse(spec);
    if (result.ring === undefined) {
      throw new KeyRingError(result.problems);
    }
    return result.ring;
  }

  /** Like parse, but returns every problem instead of throwing (same as parseKeyRingSpec). */
  static tryParse(spec: string): KeyRingParseResult {
    const { keys, problems } = collectKeys(spec);
    if (problems.length > 0) {
      return { ring: undefined, problems };
    }
    return { ring: new KeyRing(keys), problems: [] };
  }

  /**
   * A spec with one fresh random key, for development defaults. The kid defaults to `k` plus
   * today's UTC date so a rotated-in key is recognisable in the database.
   */
  static generate(kid: string = `k${new Date().toISOString().slice(0, 10).replace(/-/g, '')}`): string {
    if (!KEY_ID_PATTERN.test(kid)) {
      throw new KeyRingError([`key id must match ${KEY_ID_PATTERN.source}`]);
    }
    return `${kid}:${randomBytes(KEY_BYTES).toString('base64')}`;
  }

  has(kid: string): boolean {
    return this.#keys.has(kid);
  }

  /**
   * The key for `kid`, as an opaque KeyObject (it prints as `SecretKeyObject { ... }`, never the
   * bytes). Meant for TokenCipher only.
   */
  secretKey(kid: string): KeyObject | undefined {
    return this.#keys.get(kid);
  }

  toString(): string {
    return `KeyRing(active=${this.activeKid}; kids=${this.kids.join(',')})`;
  }

  toJSON(): { activeKid: string; kids: readonly string[] } {
    return { activeKid: this.activeKid, kids: this.kids };
  }

  [inspect.custom](): string {
    return this.toString();
  }
}
