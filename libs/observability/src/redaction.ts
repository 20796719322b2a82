/**
 * Paths pino replaces with "[redacted]" wherever they appear in a log line. The broker
 * never logs a token on purpose; this is the net under that rule (guarantee 2).
 */
export const REDACTED_PATHS: string[] = [
  'req.headers.authorization',
  'req.headers.cookie',
  'res.headers["set-cookie"]',
  '*.access_token',
  '*.refresh_token',
  '*.accessToken',
  '*.refreshToken',
  '*.client_secret',
  '*.clientSecret',
  '*.token',
  '*.code',
  '*.code_verifier',
  '*.password',
  '*.secret',
  '*.authorization',
];
