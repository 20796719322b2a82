/**
 * TokenCipher seals OAuth access and refresh tokens before they reach the database and opens
 * them on the way out (DESIGN guarantee 1, "At rest").
 *
 * Each value is AES-256-GCM with a fresh random 96-bit IV, stored as one compact string
 * `v1.<kid>.<base64url iv>.<base64url ciphertext||tag>`. The additional authenticated data binds
 * the value to its format version, key id, connection row and column, so a ciphertext copied to
 * another row or field fails to open instead of handing out someone else's token.
 *
 * It must never log anything, and never put plaintext, ciphertext or key material in an error
 * message, a thrown value's properties or a return value other than `open`'s result.
 */
import { createCipheriv, createDecipheriv, randomBytes as nodeRandomBytes } from 'node:crypto';
import { Inject, Injectable, Optional } from '@nestjs/common';
import { KEY_ID_PATTERN, KeyRing } from './key-ring';

/** DI token for the KeyRing the cipher uses; its value comes from the consumer (see CryptoModule). */
export const KEY_RING = 'KEY_RING';
/** DI token to replace the IV source, so tests can pin IVs and check fixed vectors. */
export const CIPHER_RANDOM_BYTES = 'CIPHER_RANDOM_BYTES';

export type RandomBytes = (size: number) => Buffer;

export type TokenField = 'access_token' | 'refresh_token';

export interface SealContext {
  /** The row the value belongs to. */
  connectionId: string;
  /** The column the value belongs to; other secrets may use their own field names. */
  field: TokenField | (string & Record<never, never>);
}

/** What goes in the database column: `v1.<kid>.<iv>.<ciphertext||tag>`, all base64url. */
export type SealedValue = string;

export const TokenDecryptReason = {
  UnknownKey: 'unknown_key',
  Tampered: 'tampered',
  Malformed: 'malformed',
} as const;
export type TokenDecryptReason = (typeof TokenDecryptReason)[keyof typeof TokenDecryptReason];

export class TokenDecryptError extends Error {
  override readonly name = 'TokenDecryptError';

  constructor(
    readonly reason: TokenDecryptReason,
    message: string,
    /** Set for `unknown_key`: key ids are not secret, and rotation needs to know which is missing. */
    readonly kid?: string,
  ) {
    super(message);
  }
}

const FORMAT = 'v1';
const ALGORITHM = 'aes-256-gcm';
const IV_BYTES = 12;
const TAG_BYTES = 16;
const IV_CHARS = 16; // base64url of 12 bytes, no padding
const MIN_BODY_CHARS = 22; // base64url of a bare 16-byte tag (empty plaintext)
const BASE64URL_PATTERN = /^[A-Za-z0-9_-]*$/;

/**
 * Reads the key id of a sealed value without decrypting it, so key rotation can find rows still
 * under an old key.
 * @throws TokenDecryptError `malformed` if the value is not a v1 sealed value.
 */
export function sealedKeyId(sealed: string): string {
  return splitSealed(sealed).kid;
}

@Injectable()
export class TokenCipher {
  readonly #ring: KeyRing;
  readonly #randomBytes: RandomBytes;

  constructor(
    @Inject(KEY_RING) ring: KeyRing,
    @Optional() @Inject(CIPHER_RANDOM_BYTES) randomBytes: RandomBytes = nodeRandomBytes,
  ) {
    this.#ring = ring;
    this.#randomBytes = randomBytes;
  }

  /** The key id new values are sealed under. */
  get activeKeyId(): string {
    return this.#ring.activeKid;
  }

  /** Encrypts under the active key. Random 96-bit IVs stay safe for ~2^32 seals per key. */
  seal(plaintext: string, context: SealContext): SealedValue {
    assertContext(context);
    const kid = this.#ring.activeKid;
    const key = this.#ring.secretKey(kid);
    if (key === undefined) {
      // The ring guarantees its active key exists; reaching here is a bug, not bad input.
      throw new Error(`Key ring has no key for its active kid "${kid}"`);
    }
    const iv = this.#randomBytes(IV_BYTES);
    if (iv.length !== IV_BYTES) {
      throw new Error(`Random source returned ${iv.length} bytes, expected ${IV_BYTES}`);
    }
    const cipher = createCipheriv(ALGORITHM, key, iv, { authTagLength: TAG_BYTES });
    cipher.setAAD(associatedData(kid, context));
    const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final(), cipher.getAuthTag()]);
    return `${FORMAT}.${kid}.${iv.toString('base64url')}.${body.toString('base64url')}`;
  }

  /**
   * Decrypts a value sealed for exactly this row and field.
   * @throws TokenDecryptError `malformed`, `unknown_key` or `tampered`.
   */
  open(sealed: SealedValue, context: SealContext): string {
    assertContext(context);
    const parts = splitSealed(sealed);
    const key = this.#ring.secretKey(parts.kid);
    if (key === undefined) {
      throw new TokenDecryptError(
        TokenDecryptReason.UnknownKey,
        `Sealed token uses key id "${parts.kid}", which is not in the key ring`,
        parts.kid,
      );
    }
    const iv = decodeBase64url(parts.iv);
    const body = decodeBase64url(parts.body);
    if (iv === undefined || iv.length !== IV_BYTES) {
      throw malformed('IV is not 12 bytes of base64url');
    }
    if (body === undefined || body.length < TAG_BYTES) {
      throw malformed('ciphertext is not base64url or is shorter than the authentication tag');
    }
    const tagStart = body.length - TAG_BYTES;
    try {
      const decipher = createDecipheriv(ALGORITHM, key, iv, { authTagLength: TAG_BYTES });
      decipher.setAuthTag(body.subarray(tagStart));
      decipher.setAAD(associatedData(parts.kid, context));
      const head = decipher.update(body.subarray(0, tagStart));
      const tail = decipher.final();
      // GCM is a stream mode: final() yields nothing, so skip the concat on the hot path.
      return (tail.length === 0 ? head : Buffer.concat([head, tail])).toString('utf8');
    } catch {
      // OpenSSL's error says nothing useful and cannot tell the causes apart, so it is dropped.
      throw new TokenDecryptError(
        TokenDecryptReason.Tampered,
        'Sealed token failed authentication: it was altered, belongs to another row or field, or its key changed',
      );
    }
  }

  /** True when the value is sealed under a key other than the active one (a rotation candidate). */
  needsReseal(sealed: SealedValue): boolean {
    return sealedKeyId(sealed) !== this.#ring.activeKid;
  }

  /** Opens under whichever key sealed the value and seals again under the active key. */
  reseal(sealed: SealedValue, context: SealContext): SealedValue {
    return this.seal(this.open(sealed, context), context);
  }
}

interface SealedParts {
  kid: string;
  iv: string;
  body: string;
}

// indexOf rather than split/regex: this runs on every token read.
function splitSealed(sealed: string): SealedParts {
  if (typeof sealed !== 'string' || !sealed.startsWith(`${FORMAT}.`)) {
    // Deliberately not echoing the value: a plaintext token stored by mistake would land here.
    throw malformed('unsupported format (expected "v1.<kid>.<iv>.<ciphertext>")');
  }
  const kidStart = FORMAT.length + 1;
  const ivStart = sealed.indexOf('.', kidStart) + 1;
  const bodyStart = ivStart === 0 ? 0 : sealed.indexOf('.', ivStart) + 1;
  if (ivStart === 0 || bodyStart === 0 || sealed.indexOf('.', bodyStart) !== -1) {
    throw malformed('expected four dot-separated parts');
  }
  const kid = sealed.slice(kidStart, ivStart - 1);
  if (!KEY_ID_PATTERN.test(kid)) {
    throw malformed('key id is invalid');
  }
  const iv = sealed.slice(ivStart, bodyStart - 1);
  const body = sealed.slice(bodyStart);
  if (iv.length !== IV_CHARS || body.length < MIN_BODY_CHARS) {
    throw malformed('IV or ciphertext has the wrong length');
  }
  return { kid, iv, body };
}

function malformed(detail: string): TokenDecryptError {
  return new TokenDecryptError(TokenDecryptReason.Malformed, `Sealed token is malformed: ${detail}`);
}

/**
 * Strict base64url: Buffer.from silently skips stray characters and ignores non-zero padding
 * bits, which would let several different strings open as the same value.
 */
function decodeBase64url(text: string): Buffer | undefined {
  const rest = text.length % 4;
  if (rest === 1 || !BASE64URL_PATTERN.test(text)) {
    return undefined;
  }
  if (rest !== 0) {
    const last = sextet(text.charCodeAt(text.length - 1));
    const unusedBits = rest === 2 ? 0x0f : 0x03;
    if ((last & unusedBits) !== 0) {
      return undefined;
    }
  }
  return Buffer.from(text, 'base64url');
}

function sextet(code: number): number {
  if (code >= 65 && code <= 90) return code - 65; // A-Z
  if (code >= 97 && code <= 122) return code - 71; // a-z
  if (code >= 48 && code <= 57) return code + 4; // 0-9
  return code === 45 ? 62 : 63; // '-' or '_'
}

/**
 * The AAD: each of (format, kid, connectionId, field) as a 4-byte big-endian UTF-8 length then
 * the bytes. Length prefixes keep the encoding unambiguous whatever characters the ids contain
 * (a plain join could make ("a.b", "c") collide with ("a", "b.c")).
 */
function associatedData(kid: string, context: SealContext): Buffer {
  const parts = [FORMAT, kid, context.connectionId, context.field];
  let size = 0;
  for (const part of parts) {
    size += 4 + Buffer.byteLength(part, 'utf8');
  }
  const aad = Buffer.allocUnsafe(size);
  let offset = 0;
  for (const part of parts) {
    const length = aad.write(part, offset + 4, 'utf8');
    aad.writeUInt32BE(length, offset);
    offset += 4 + length;
  }
  return aad;
}

function assertContext(context: SealContext): void {
  // An empty binding would let a value open in any row or field with the same empty id:
  // that is a caller bug, so it fails loudly rather than as a decrypt error.
  if (typeof context.connectionId !== 'string' || context.connectionId === '') {
    throw new TypeError('SealContext.connectionId must be a non-empty string');
  }
  if (typeof context.field !== 'string' || context.field === '') {
    throw new TypeError('SealContext.field must be a non-empty string');
  }
}
