import { jwtExpiry, readTokenFromAnswer } from './derived-token';

const FIELDS = ['access_token', 'token', 'jwt'];
const b64 = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url');
const jwt = (claims: unknown): string => `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}.c2lnbmF0dXJl`;

describe('readTokenFromAnswer', () => {
  const token = jwt({ exp: 2_000_000_000 });

  it('takes the token as text, as a JSON string, or from the first of the fields an object carries', () => {
    expect(readTokenFromAnswer(`${token}\n`, FIELDS)).toBe(token);
    expect(readTokenFromAnswer(JSON.stringify(token), FIELDS)).toBe(token);
    expect(readTokenFromAnswer(JSON.stringify({ token }), FIELDS)).toBe(token);
    expect(readTokenFromAnswer(JSON.stringify({ jwt: token, expires_in: 86400 }), FIELDS)).toBe(token);
    expect(readTokenFromAnswer(JSON.stringify({ access_token: 'first', token: 'second' }), FIELDS)).toBe('first');
  });

  it('finds none in an empty answer, an object without the fields, other JSON, or text with spaces', () => {
    for (const body of ['', '   ', '{}', '{"error":"invalid_token"}', '[]', '42', 'null', '{"token":""}', '<html>Bad gateway</html>', '{"token":7}']) {
      expect(readTokenFromAnswer(body, FIELDS)).toBeNull();
    }
  });
});

describe('jwtExpiry', () => {
  it('reads exp (seconds) as an instant', () => {
    expect(jwtExpiry(jwt({ sub: 'u', exp: 1_800_000_000 }))).toEqual(new Date(1_800_000_000_000));
  });

  it('is null without a usable exp, or for something that is not a compact JWT', () => {
    for (const value of [jwt({ sub: 'u' }), jwt({ exp: 'tomorrow' }), jwt({ exp: -1 }), jwt('claims'), 'opaque-token', 'a.b', `a.${'%'}.c`, 'a.bm90IGpzb24.c']) {
      expect(jwtExpiry(value)).toBeNull();
    }
  });
});
