import { createCipheriv, randomBytes } from 'node:crypto';
import { inspect } from 'node:util';
import { KeyRing } from './key-ring';
import { sealedKeyId, SealContext, TokenCipher, TokenDecryptError, TokenDecryptReason } from './token-cipher';

const FIXED_KEY = Buffer.from(Array.from({ length: 32 }, (_, i) => i));
const FIXED_IV = Buffer.from('a0a1a2a3a4a5a6a7a8a9aaab', 'hex');
const ACCESS: SealContext = { connectionId: 'conn-1', field: 'access_token' };
const REFRESH: SealContext = { connectionId: 'conn-1', field: 'refresh_token' };

function ringOf(...kids: string[]): KeyRing {
  return KeyRing.parse(kids.map((kid) => `${kid}:${randomBytes(32).toString('base64')}`).join(','));
}

function decryptError(fn: () => unknown): TokenDecryptError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(TokenDecryptError);
    return error as TokenDecryptError;
  }
  throw new Error('expected a TokenDecryptError');
}

/** Applies `edit` to the decoded ciphertext||tag part and re-encodes it canonically. */
function editBody(sealed: string, edit: (body: Buffer) => void): string {
  const parts = sealed.split('.');
  const body = Buffer.from(parts[3], 'base64url');
  edit(body);
  parts[3] = body.toString('base64url');
  return parts.join('.');
}

describe('TokenCipher', () => {
  describe('fixed vectors', () => {
    const fixedRing = KeyRing.parse(`k1:${FIXED_KEY.toString('base64')}`);
    const cipher = new TokenCipher(fixedRing, () => Buffer.from(FIXED_IV));

    // Literals computed once and cross-checked with Python's `cryptography` AESGCM, an
    // implementation independent of Node's, with the AAD assembled by hand.
    const ACCESS_VECTOR = 'v1.k1.oKGio6Slpqeoqaqr.gXATcgSoYdoRFtO8bB-u80Geanx6zwkb0q1yu9zRkGSuXtc';
    const EMPTY_REFRESH_VECTOR = 'v1.k1.oKGio6Slpqeoqaqr.iAzEVZIUbwWcoFXvy_jaPg';

    it('seals to the known ciphertext', () => {
      expect(cipher.seal('gho_AccessToken-123', ACCESS)).toBe(ACCESS_VECTOR);
      expect(cipher.seal('', REFRESH)).toBe(EMPTY_REFRESH_VECTOR);
    });

    it('matches a direct AES-256-GCM call with the documented AAD layout', () => {
      // (format, kid, connectionId, field), each as u32 big-endian length + UTF-8 bytes.
      const aad = Buffer.from(
        '00000002' + '7631' + '00000002' + '6b31' + '00000006' + '636f6e6e2d31' + '0000000c' + '6163636573735f746f6b656e',
        'hex',
      );
      const raw = createCipheriv('aes-256-gcm', FIXED_KEY, FIXED_IV);
      raw.setAAD(aad);
      const body = Buffer.concat([raw.update('gho_AccessToken-123', 'utf8'), raw.final(), raw.getAuthTag()]);
      expect(`v1.k1.${FIXED_IV.toString('base64url')}.${body.toString('base64url')}`).toBe(ACCESS_VECTOR);
    });

    it('opens the known ciphertext', () => {
      expect(cipher.open(ACCESS_VECTOR, ACCESS)).toBe('gho_AccessToken-123');
      expect(cipher.open(EMPTY_REFRESH_VECTOR, REFRESH)).toBe('');
    });
  });

  describe('round trip', () => {
    const cipher = new TokenCipher(ringOf('k1'));

    it.each([
      ['an ASCII token', 'ya29.a0AfH6SMBx-_~+/=token'],
      ['an empty string', ''],
      ['unicode', 'tökén 🔑 токен 令牌'],
      ['a long value', 'x'.repeat(10_000)],
    ])('returns %s unchanged', (_label, plaintext) => {
      expect(cipher.open(cipher.seal(plaintext, ACCESS), ACCESS)).toBe(plaintext);
    });

    it('uses a fresh IV, so sealing the same value twice gives different strings', () => {
      const first = cipher.seal('same-token', ACCESS);
      const second = cipher.seal('same-token', ACCESS);
      expect(first).not.toBe(second);
      expect(first.split('.')[2]).not.toBe(second.split('.')[2]);
    });

    it('produces one compact string with the kid readable without decrypting', () => {
      const sealed = cipher.seal('token', ACCESS);
      expect(sealed).toMatch(/^v1\.k1\.[A-Za-z0-9_-]{16}\.[A-Za-z0-9_-]+$/);
      expect(sealed).not.toContain('token');
      expect(sealedKeyId(sealed)).toBe('k1');
    });

    it('refuses an empty binding instead of sealing a value that opens anywhere', () => {
      expect(() => cipher.seal('t', { connectionId: '', field: 'access_token' })).toThrow(TypeError);
      expect(() => cipher.seal('t', { connectionId: 'c', field: '' })).toThrow(TypeError);
    });
  });

  describe('binding to row and field', () => {
    const cipher = new TokenCipher(ringOf('k1'));
    const sealed = cipher.seal('secret-access-token', ACCESS);

    it('fails as tampered when copied to another connection', () => {
      const error = decryptError(() => cipher.open(sealed, { ...ACCESS, connectionId: 'conn-2' }));
      expect(error.reason).toBe(TokenDecryptReason.Tampered);
    });

    it('fails as tampered when copied to another field', () => {
      expect(decryptError(() => cipher.open(sealed, REFRESH)).reason).toBe('tampered');
    });

    it('does not let id and field boundaries shift (length-prefixed AAD)', () => {
      const a = cipher.seal('t', { connectionId: 'ab', field: 'c' });
      expect(decryptError(() => cipher.open(a, { connectionId: 'a', field: 'bc' })).reason).toBe('tampered');
    });
  });

  describe('tampering and wrong keys', () => {
    const cipher = new TokenCipher(ringOf('k1'));
    const sealed = cipher.seal('secret-access-token', ACCESS);

    it('detects a flipped byte in the ciphertext', () => {
      const flipped = editBody(sealed, (body) => (body[0] ^= 0x01));
      expect(decryptError(() => cipher.open(flipped, ACCESS)).reason).toBe('tampered');
    });

    it('detects a flipped byte in the tag', () => {
      const flipped = editBody(sealed, (body) => (body[body.length - 1] ^= 0x80));
      expect(decryptError(() => cipher.open(flipped, ACCESS)).reason).toBe('tampered');
    });

    it('detects a changed IV', () => {
      const parts = sealed.split('.');
      const iv = Buffer.from(parts[2], 'base64url');
      iv[5] ^= 0x01;
      parts[2] = iv.toString('base64url');
      expect(decryptError(() => cipher.open(parts.join('.'), ACCESS)).reason).toBe('tampered');
    });

    it('detects a value with its last byte cut off', () => {
      const parts = sealed.split('.');
      parts[3] = Buffer.from(parts[3], 'base64url').subarray(0, -1).toString('base64url');
      expect(decryptError(() => cipher.open(parts.join('.'), ACCESS)).reason).toBe('tampered');
    });

    it('fails as tampered under a different key with the same kid', () => {
      const other = new TokenCipher(ringOf('k1'));
      expect(decryptError(() => other.open(sealed, ACCESS)).reason).toBe('tampered');
    });

    it('names the kid when it is not in the ring', () => {
      const other = new TokenCipher(ringOf('k2'));
      const error = decryptError(() => other.open(sealed, ACCESS));
      expect(error.reason).toBe(TokenDecryptReason.UnknownKey);
      expect(error.kid).toBe('k1');
      expect(error.message).toContain('"k1"');
    });

    it('never puts plaintext, ciphertext or key material in an error', () => {
      const keyBase64 = FIXED_KEY.toString('base64');
      const fixed = new TokenCipher(KeyRing.parse(`k1:${keyBase64}`));
      const value = fixed.seal('secret-access-token', ACCESS);
      const errors = [
        decryptError(() => fixed.open(value, REFRESH)),
        decryptError(() => fixed.open(editBody(value, (b) => (b[0] ^= 1)), ACCESS)),
        decryptError(() => new TokenCipher(ringOf('k2')).open(value, ACCESS)),
        decryptError(() => fixed.open('gho_PlaintextStoredByMistake', ACCESS)),
        decryptError(() => fixed.open(`${value}.extra`, ACCESS)),
      ];
      for (const error of errors) {
        const shown = `${error.message} ${inspect(error)} ${JSON.stringify(error)}`;
        expect(shown).not.toContain('secret-access-token');
        expect(shown).not.toContain('PlaintextStoredByMistake');
        expect(shown).not.toContain(value.split('.')[3]);
        expect(shown).not.toContain(keyBase64);
      }
    });
  });

  describe('malformed values', () => {
    const cipher = new TokenCipher(ringOf('k1'));
    const [, , iv, body] = cipher.seal('token', ACCESS).split('.');

    it.each([
      ['empty', ''],
      ['a plaintext token', 'ya29.a0AfH6SMBxTokenValue'],
      ['another version', `v2.k1.${iv}.${body}`],
      ['too few parts', `v1.k1.${iv}`],
      ['too many parts', `v1.k1.${iv}.${body}.x`],
      ['an empty kid', `v1..${iv}.${body}`],
      ['an invalid kid', `v1.k*1.${iv}.${body}`],
      ['a short IV', `v1.k1.${iv.slice(4)}.${body}`],
      ['a non-base64url IV', `v1.k1.${iv.slice(0, 15)}+.${body}`],
      ['a body shorter than the tag', `v1.k1.${iv}.${body.slice(0, 20)}`],
      ['a non-base64url body', `v1.k1.${iv}.${body.slice(0, -1)}=`],
      ['an impossible base64url length', `v1.k1.${iv}.${body}A`],
    ])('rejects %s as malformed', (_label, value) => {
      expect(decryptError(() => cipher.open(value, ACCESS)).reason).toBe(TokenDecryptReason.Malformed);
    });

    it('rejects non-canonical base64url (stray padding bits) rather than opening it', () => {
      // 22 chars encode 16 bytes, leaving 4 unused bits in the last char; this sets one of them.
      const emptySealed = cipher.seal('', ACCESS);
      const parts = emptySealed.split('.');
      const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
      const index = alphabet.indexOf(parts[3].slice(-1));
      parts[3] = parts[3].slice(0, -1) + alphabet[index ^ 1];
      // Node alone would accept it and decode the very same bytes:
      expect(Buffer.from(parts[3], 'base64url').equals(Buffer.from(emptySealed.split('.')[3], 'base64url'))).toBe(true);
      expect(decryptError(() => cipher.open(parts.join('.'), ACCESS)).reason).toBe('malformed');
    });

    it('sealedKeyId rejects malformed values the same way', () => {
      expect(decryptError(() => sealedKeyId('not-sealed')).reason).toBe('malformed');
    });
  });

  describe('key rotation', () => {
    const oldSpec = `old:${randomBytes(32).toString('base64')}`;
    const newSpec = `new:${randomBytes(32).toString('base64')}`;
    const before = new TokenCipher(KeyRing.parse(oldSpec));
    const after = new TokenCipher(KeyRing.parse(`${newSpec},${oldSpec}`));
    const sealedUnderOld = before.seal('long-lived-refresh-token', REFRESH);

    it('still opens values sealed under a key that is no longer active', () => {
      expect(after.open(sealedUnderOld, REFRESH)).toBe('long-lived-refresh-token');
    });

    it('seals under the first key of the ring', () => {
      expect(sealedKeyId(after.seal('t', REFRESH))).toBe('new');
    });

    it('flags only values under an old key for resealing', () => {
      expect(after.needsReseal(sealedUnderOld)).toBe(true);
      expect(after.needsReseal(after.seal('t', REFRESH))).toBe(false);
      expect(before.needsReseal(sealedUnderOld)).toBe(false);
    });

    it('reseals under the active key, keeping the row binding', () => {
      const resealed = after.reseal(sealedUnderOld, REFRESH);
      expect(sealedKeyId(resealed)).toBe('new');
      expect(after.open(resealed, REFRESH)).toBe('long-lived-refresh-token');
      expect(decryptError(() => after.open(resealed, ACCESS)).reason).toBe('tampered');
    });
  });

  it('does not show keys when the cipher itself is inspected or serialised', () => {
    const keyBase64 = FIXED_KEY.toString('base64');
    const cipher = new TokenCipher(KeyRing.parse(`k1:${keyBase64}`));
    const shown = `${inspect(cipher, { depth: 10, showHidden: true })} ${JSON.stringify(cipher)}`;
    expect(shown).not.toContain(keyBase64);
    expect(shown).not.toContain(FIXED_KEY.toString('hex'));
  });
});
