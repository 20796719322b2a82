/**
 * WEBHOOK_* settings (DESIGN, "Lifecycle events (webhooks)"): the default attempt budget really
 * retries for at least 24 h even when every retry draws its shortest jitter; the retry delay
 * doubles, is capped and honours a longer Retry-After; and a bad WEBHOOK_URLS / WEBHOOK_SECRET is
 * reported with every problem at once, without ever quoting a URL's path or query (which may hold
 * the receiver's own token) or a secret.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, loadConfig } from './load-config';
import { attemptsSpanning, readWebhookSettings, WEBHOOK_RETRY_SPAN_MS, webhookRetryDelayMs } from './webhook-settings';

const secret = (bytes = 32): string => `whsec_${randomBytes(bytes).toString('base64')}`;
const read = (env: Record<string, string>) => (name: string): string | undefined => env[name];

/** Total time waited before the last of `attempts` attempts, every retry at its shortest jitter. */
function shortestSpan(attempts: number, retryBaseMs: number, retryMaxMs: number): number {
  let waited = 0;
  for (let attempt = 1; attempt < attempts; attempt++) waited += webhookRetryDelayMs({ retryBaseMs, retryMaxMs }, attempt, 0);
  return waited;
}

describe('webhook settings', () => {
  describe('retry schedule', () => {
    it('the default attempt budget spans at least 24 h at the shortest jitter, and one attempt fewer would not', () => {
      const settings = readWebhookSettings(read({}), undefined, undefined, false, []);
      expect(settings).toMatchObject({ retryBaseMs: 5_000, retryMaxMs: 3_600_000 });
      expect(settings.maxAttempts).toBe(attemptsSpanning(WEBHOOK_RETRY_SPAN_MS, 5_000, 3_600_000));
      expect(shortestSpan(settings.maxAttempts, 5_000, 3_600_000)).toBeGreaterThanOrEqual(24 * 3_600_000);
      expect(shortestSpan(settings.maxAttempts - 1, 5_000, 3_600_000)).toBeLessThan(24 * 3_600_000);
    });

    it.each([
      [100, 400],
      [100, 100],
      [1_000, 60_000],
      [60_000, 86_400_000],
    ])('with base %i ms and max %i ms the default budget still spans 24 h', (retryBaseMs, retryMaxMs) => {
      const settings = readWebhookSettings(read({ WEBHOOK_RETRY_BASE_MS: String(retryBaseMs), WEBHOOK_RETRY_MAX_MS: String(retryMaxMs) }), undefined, undefined, false, []);
      expect(shortestSpan(settings.maxAttempts, retryBaseMs, retryMaxMs)).toBeGreaterThanOrEqual(WEBHOOK_RETRY_SPAN_MS);
    });

    it('doubles per failed attempt within ±20 % jitter, stops at the maximum, and honours a longer Retry-After up to the maximum', () => {
      const settings = { retryBaseMs: 1_000, retryMaxMs: 10_000 };
      expect([1, 2, 3, 4, 5, 60].map((attempt) => webhookRetryDelayMs(settings, attempt, 0.5))).toEqual([1_000, 2_000, 4_000, 8_000, 10_000, 10_000]);
      expect(webhookRetryDelayMs(settings, 1, 0)).toBe(800);
      expect(webhookRetryDelayMs(settings, 1, 0.999999)).toBeLessThanOrEqual(1_200);
      expect(webhookRetryDelayMs(settings, 1, 0.5, 5_000)).toBe(5_000);
      expect(webhookRetryDelayMs(settings, 1, 0.5, 500)).toBe(1_000);
      expect(webhookRetryDelayMs(settings, 1, 0.5, 999_999)).toBe(10_000);
    });

    it('an explicit WEBHOOK_MAX_ATTEMPTS wins; WEBHOOK_RETRY_BASE_MS under 100 or a max under the base is refused', () => {
      expect(readWebhookSettings(read({ WEBHOOK_MAX_ATTEMPTS: '2' }), undefined, undefined, false, []).maxAttempts).toBe(2);
      const problems: string[] = [];
      readWebhookSettings(read({ WEBHOOK_RETRY_BASE_MS: '99', WEBHOOK_MAX_ATTEMPTS: '0' }), undefined, undefined, false, problems);
      expect(problems).toEqual([expect.stringContaining('WEBHOOK_RETRY_BASE_MS'), expect.stringContaining('WEBHOOK_MAX_ATTEMPTS')]);
      const inverted: string[] = [];
      readWebhookSettings(read({ WEBHOOK_RETRY_BASE_MS: '5000', WEBHOOK_RETRY_MAX_MS: '1000' }), undefined, undefined, false, inverted);
      expect(inverted).toEqual(['WEBHOOK_RETRY_MAX_MS: must not be less than WEBHOOK_RETRY_BASE_MS']);
    });
  });

  describe('URLs and secrets', () => {
    const QUERY_TOKEN = 'receiver-token-1f3a9c';

    it('accepts https and loopback http URLs and several secrets (the first signs)', () => {
      const [first, second] = [secret(), secret(24)];
      const problems: string[] = [];
      const settings = readWebhookSettings(
        read({}),
        `https://hooks.example.com/in?token=${QUERY_TOKEN}, http://127.0.0.1:9000/hooks`,
        `${first} ${second}`,
        true,
        problems,
      );
      expect(problems).toEqual([]);
      expect(settings.urls).toEqual([`https://hooks.example.com/in?token=${QUERY_TOKEN}`, 'http://127.0.0.1:9000/hooks']);
      expect(settings.secrets).toEqual([first, second]);
    });

    it('lists every problem of bad URLs and secrets, naming entries by position, never quoting a path, query or secret', () => {
      const shortSecret = secret(8);
      const problems: string[] = [];
      readWebhookSettings(
        read({}),
        [
          `not a url ${QUERY_TOKEN}`,
          `ftp://files.example.com/drop?token=${QUERY_TOKEN}`,
          `http://hooks.example.com/in?token=${QUERY_TOKEN}`,
          `https://twice.example.com/a?token=${QUERY_TOKEN}`,
          `https://twice.example.com/a?token=${QUERY_TOKEN}`,
        ].join(','),
        `${shortSecret},plain-${QUERY_TOKEN}`,
        true,
        problems,
      );
      expect(problems).toEqual([
        'WEBHOOK_URLS: entry 1 is not a URL',
        expect.stringMatching(/^WEBHOOK_URLS: entry 2 must be an https URL/),
        expect.stringMatching(/^WEBHOOK_URLS: entry 3 \(http:\/\/hooks\.example\.com\) must be https in production/),
        'WEBHOOK_URLS: entry 5 (https://twice.example.com) is given twice',
        expect.stringMatching(/^WEBHOOK_SECRET: secret 1 /),
        expect.stringMatching(/^WEBHOOK_SECRET: secret 2 /),
      ]);
      for (const problem of problems) {
        expect(problem).not.toContain(QUERY_TOKEN);
        expect(problem).not.toContain('token=');
        expect(problem).not.toContain('/in');
        expect(problem).not.toContain(shortSecret.slice('whsec_'.length));
      }
    });

    it('refuses a WEBHOOK_SECRET set to separators only (it would sign nothing and every delivery would fail)', () => {
      const problems: string[] = [];
      const settings = readWebhookSettings(read({}), 'https://hooks.example.com/broker', ' , ', true, problems);
      expect(settings.secrets).toEqual([]);
      expect(problems).toEqual([expect.stringMatching(/^WEBHOOK_SECRET: no secret given/)]);
    });

    it('loadConfig refuses them all in one ConfigError whose message quotes no URL query or secret', () => {
      const dataDir = mkdtempSync(join(tmpdir(), 'tb-webhook-config-'));
      try {
        const badSecret = `whsec_${randomBytes(8).toString('base64')}`;
        let error: unknown;
        try {
          loadConfig({
            DATA_DIR: dataDir,
            NODE_ENV: 'test',
            WEBHOOK_URLS: `http://hooks.example.com/x?token=${QUERY_TOKEN},::bad::${QUERY_TOKEN}`,
            WEBHOOK_SECRET: badSecret,
            WEBHOOK_RETRY_BASE_MS: '50',
          });
        } catch (thrown) {
          error = thrown;
        }
        expect(error).toBeInstanceOf(ConfigError);
        const { problems, message } = error as ConfigError;
        // Outside production plain http is allowed; the second entry, the secret and the base are not.
        expect(problems).toEqual([
          'WEBHOOK_URLS: entry 2 is not a URL',
          expect.stringMatching(/^WEBHOOK_SECRET: secret 1 /),
          expect.stringMatching(/^WEBHOOK_RETRY_BASE_MS: /),
        ]);
        expect(message).not.toContain(QUERY_TOKEN);
        expect(message).not.toContain(badSecret.slice('whsec_'.length));
      } finally {
        rmSync(dataDir, { recursive: true, force: true });
      }
    });

    it('AppConfig.toJSON shows endpoints by origin only, and no secret', () => {
      const dataDir = mkdtempSync(join(tmpdir(), 'tb-webhook-config-'));
      try {
        const signing = secret();
        const { config } = loadConfig({ DATA_DIR: dataDir, NODE_ENV: 'test', WEBHOOK_URLS: `https://hooks.example.com/in?token=${QUERY_TOKEN}`, WEBHOOK_SECRET: signing });
        expect(config.webhooks.urls).toEqual([`https://hooks.example.com/in?token=${QUERY_TOKEN}`]);
        const shown = JSON.stringify(config);
        expect(shown).toContain('https://hooks.example.com');
        expect(shown).not.toContain(QUERY_TOKEN);
        expect(shown).not.toContain(signing.slice('whsec_'.length));
      } finally {
        rmSync(dataDir, { recursive: true, force: true });
      }
    });
  });
});
