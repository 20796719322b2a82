import { randomBytes } from 'node:crypto';
import { inspect } from 'node:util';
import { KeyRing, KeyRingError, parseKeyRingSpec } from './key-ring';

const keyA = randomBytes(32).toString('base64');
const keyB = randomBytes(32).toString('base64');

function parseError(spec: string): KeyRingError {
  try {
    KeyRing.parse(spec);
  } catch (error) {
    expect(error).toBeInstanceOf(KeyRingError);
    return error as KeyRingError;
  }
  throw new Error('expected a KeyRingError');
}

describe('KeyRing', () => {
  describe('parse', () => {
    it('makes the first key active and keeps the others for opening', () => {
      const ring = KeyRing.parse(`k2:${keyB},k1:${keyA}`);
      expect(ring.activeKid).toBe('k2');
      expect(ring.kids).toEqual(['k2', 'k1']);
      expect(ring.has('k1')).toBe(true);
      expect(ring.has('k3')).toBe(false);
      expect(ring.secretKey('k1')?.symmetricKeySize).toBe(32);
      expect(ring.secretKey('k1')?.export().toString('base64')).toBe(keyA);
    });

    it('tolerates whitespace around entries and url-safe base64 without padding', () => {
      const urlSafe = Buffer.from(keyB, 'base64').toString('base64url');
      const ring = KeyRing.parse(` k1 : ${keyA} ,\n k_2-x:${urlSafe} `);
      expect(ring.kids).toEqual(['k1', 'k_2-x']);
      expect(ring.secretKey('k_2-x')?.export().toString('base64')).toBe(keyB);
    });

    it('rejects an empty spec', () => {
      expect(parseError('').problems).toEqual(['no keys given (expected "kid:base64key,...")']);
      expect(parseError('   ').problems).toHaveLength(1);
    });

    it('lists every problem in one pass, naming kid and position but never key material', () => {
      const shortKey = randomBytes(16).toString('base64');
      const longKey = randomBytes(48).toString('base64');
      const spec = [
        `good:${keyA}`,
        `short:${shortKey}`,
        `good:${keyB}`,
        keyB, // a bare key, kid forgotten
        `bad kid!:${keyA}`,
        `long:${longKey}`,
        'notbase64:@@@@',
        '',
        'nokey:',
        `${'x'.repeat(33)}:${keyA}`,
      ].join(',');

      const result = parseKeyRingSpec(spec);
      expect(result.ring).toBeUndefined();
      expect(result.problems).toEqual([
        'entry 2 (kid "short"): key must decode to 32 bytes, got 16',
        'entry 3 (kid "good"): duplicate key id',
        'entry 4 has no "kid:" prefix (expected "kid:base64key")',
        'entry 5: key id must match ^[A-Za-z0-9_-]{1,32}$ (got 8 characters)',
        'entry 6 (kid "long"): key must decode to 32 bytes, got 48',
        'entry 7 (kid "notbase64"): key is not valid base64',
        'entry 8 is empty',
        'entry 9 (kid "nokey"): key is empty',
        'entry 10: key id must match ^[A-Za-z0-9_-]{1,32}$ (got 33 characters)',
      ]);

      const error = parseError(spec);
      expect(error.problems).toEqual(result.problems);
      expect(error.message).toMatch(/^Invalid key ring: entry 2 .*; entry 3 /);
      for (const secret of [keyA, keyB, shortKey, longKey, 'bad kid!']) {
        expect(error.message).not.toContain(secret);
        expect(inspect(error)).not.toContain(secret);
      }
    });

    it('does not echo an invalid kid, which may be misplaced key material', () => {
      const message = parseError(`${keyA.slice(0, 20)}+:${keyB}`).message;
      expect(message).not.toContain(keyA.slice(0, 20));
      expect(message).not.toContain(keyB);
    });
  });

  describe('tryParse / parseKeyRingSpec', () => {
    it('returns the ring and no problems for a valid spec', () => {
      const result = parseKeyRingSpec(`k1:${keyA}`);
      expect(result.problems).toEqual([]);
      expect(result.ring?.activeKid).toBe('k1');
    });
  });

  describe('generate', () => {
    it('produces a parseable spec with one fresh 32-byte key', () => {
      const first = KeyRing.generate('dev');
      const second = KeyRing.generate('dev');
      expect(first).toMatch(/^dev:[A-Za-z0-9+/]{43}=$/);
      expect(first).not.toBe(second);
      expect(KeyRing.parse(first).kids).toEqual(['dev']);
    });

    it('defaults the kid to k + the UTC date', () => {
      const kid = KeyRing.parse(KeyRing.generate()).activeKid;
      expect(kid).toBe(`k${new Date().toISOString().slice(0, 10).replace(/-/g, '')}`);
    });

    it('refuses an invalid kid', () => {
      expect(() => KeyRing.generate('no.dots')).toThrow(KeyRingError);
    });
  });

  describe('never shows keys', () => {
    const ring = KeyRing.parse(`k2:${keyB},k1:${keyA}`);
    const hexA = Buffer.from(keyA, 'base64').toString('hex');

    it.each([
      ['String()', () => String(ring)],
      ['string concatenation', () => 'ring: ' + String(ring)],
      ['JSON.stringify', () => JSON.stringify({ ring })],
      ['util.inspect', () => inspect(ring, { depth: 10, showHidden: true })],
      ['util.inspect of a holder', () => inspect({ nested: { ring } }, { depth: 10 })],
      ['the secretKey handle', () => `${inspect(ring.secretKey('k1'))} ${JSON.stringify(ring.secretKey('k1'))}`],
    ])('through %s', (_label, show) => {
      const shown = show();
      expect(shown).not.toContain(keyA);
      expect(shown).not.toContain(keyB);
      expect(shown).not.toContain(hexA);
    });

    it('shows the kids instead', () => {
      expect(String(ring)).toBe('KeyRing(active=k2; kids=k2,k1)');
      expect(JSON.parse(JSON.stringify(ring))).toEqual({ activeKid: 'k2', kids: ['k2', 'k1'] });
      expect(inspect(ring)).toBe('KeyRing(active=k2; kids=k2,k1)');
    });
  });
});
