import { decodeConnectionCursor, encodeConnectionCursor } from './connection-cursor';
import { InvalidCursorError } from './connection.errors';

describe('connection cursor', () => {
  it('decodes what it encodes, whatever the account holds', () => {
    for (const [account, provider] of [
      ['acme', 'copyai'],
      ['a.b:c@d-e_f', 'copernica'],
      ['', ''],
    ]) {
      const cursor = encodeConnectionCursor(account, provider);
      expect(cursor).toMatch(/^[A-Za-z0-9_-]+$/);
      expect(decodeConnectionCursor(cursor)).toEqual([account, provider]);
    }
  });

  it('treats no cursor as the first page', () => {
    expect(decodeConnectionCursor(null)).toBeNull();
    expect(decodeConnectionCursor('')).toBeNull();
  });

  it('refuses anything it did not issue', () => {
    const encode = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url');
    for (const cursor of ['not-a-cursor', encode(['acme']), encode(['acme', 'copyai', 'x']), encode(['acme', 7]), encode({ account: 'acme' }), encode('acme')]) {
      expect(() => decodeConnectionCursor(cursor)).toThrow(InvalidCursorError);
    }
  });
});
