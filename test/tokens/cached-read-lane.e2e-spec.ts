/**
 * The token read's cached lane (TokenReadRoute.answerFromCache; docs/decisions/0017): node:http
 * hands it every request before Fastify, and it may answer only what the route would answer with
 * 200 from the cache, with the route's own bytes, recording what the route records; everything
 * else it must hand on untouched and unrecorded. Checked here over real HTTP against a broker on
 * the sandbox: the lane beside the route, answer for answer, and the lane alone behind a probe
 * server that says 599 wherever it declines.
 */
import { AuditWriter } from '@app/audit';
import { randomBytes } from 'node:crypto';
import { createServer, request, Server } from 'node:http';
import { AddressInfo } from 'node:net';
import { Drain } from '../../apps/token-broker/src/health/drain';
import { TokenReadRoute } from '../../apps/token-broker/src/tokens/token-read.route';
import { useBrokerSuite } from '../support/broker-suite';
import { connectAccount } from '../support/connect-dance';
import { captureLogs, TEST_ADMIN_KEY, TEST_SERVICE_KEY } from '../support/test-broker';

const NARROW_KEY = `nar-${randomBytes(18).toString('base64url')}`;
const DECLINED = 599;

interface Answer {
  status: number;
  /** Header names in the order they were sent, with their values (date and x-request-id blanked). */
  headers: string[];
  body: string;
}

/** One GET (or `method`) over a fresh connection; raw headers, so that their order is kept. */
function send(url: string, path: string, key: string | undefined, method = 'GET'): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(`${url}${path}`, { method, headers: key ? { authorization: `Bearer ${key}` } : {}, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        const headers: string[] = [];
        for (let i = 0; i < res.rawHeaders.length; i += 2) {
          const name = res.rawHeaders[i].toLowerCase();
          headers.push(`${name}: ${name === 'date' || name === 'x-request-id' ? '…' : res.rawHeaders[i + 1]}`);
        }
        resolve({ status: res.statusCode ?? 0, headers, body: Buffer.concat(chunks).toString('utf8') });
      });
    });
    req.on('error', reject);
    req.end();
  });
}

/** The same path with its account's first character %-escaped: Fastify decodes it to the same id, the lane declines it. */
const escaped = (path: string): string => path.replace(/^\/tokens\/(.)/, (_m, c: string) => `/tokens/%${c.charCodeAt(0).toString(16).toUpperCase()}`);

describe('GET /tokens/:account through the cached lane', () => {
  const suite = useBrokerSuite({
    env: {
      SERVICE_API_KEYS: `tests:${TEST_SERVICE_KEY},narrow:${NARROW_KEY}`,
      SERVICE_GRANTS: 'tests=*/*,narrow=copyai/acme*',
    },
  });
  let probe: Server;
  let probeUrl: string;

  beforeAll(async () => {
    // The lane alone: what it does not answer, this server answers 599.
    const route = suite.broker.app.get(TokenReadRoute);
    probe = createServer((req, res) => {
      if (!route.answerFromCache(req, res)) res.writeHead(DECLINED).end();
    });
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    probeUrl = `http://127.0.0.1:${(probe.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise((resolve) => probe?.close(resolve));
  });

  beforeEach(async () => {
    await connectAccount(suite.broker, 'acme', 'copyai');
    await connectAccount(suite.broker, 'globex', 'copper');
    await connectAccount(suite.broker, 'initech', 'copernica');
    await connectAccount(suite.broker, 'initech', 'copyai');
  });

  it('answers a cached read with the bytes and headers the route sends', async () => {
    const paths = ['/tokens/acme', '/tokens/acme?provider=copyai', '/tokens/globex?minValidity=0', '/tokens/initech?provider=copernica&minValidity=120'];
    for (const path of paths) {
      // Through the route first, which also loads the account into the cache.
      const viaRoute = await send(suite.broker.url, escaped(path), TEST_SERVICE_KEY);
      expect(viaRoute.status).toBe(200);
      const viaLane = await send(probeUrl, path, TEST_SERVICE_KEY);
      const viaBroker = await send(suite.broker.url, path, TEST_SERVICE_KEY);
      expect({ path, status: viaLane.status }).toEqual({ path, status: 200 });
      // The probe is a bare node:http server, like Fastify's: the same connection headers come with both.
      expect(viaLane).toEqual(viaRoute);
      expect(viaBroker).toEqual(viaRoute);
    }
    const token = JSON.parse((await send(probeUrl, '/tokens/acme', TEST_SERVICE_KEY)).body) as { account: string; accessToken: string };
    expect(token.account).toBe('acme');
    expect(token.accessToken.length).toBeGreaterThan(10);
  });

  it('keeps the caller’s request id, as the route does', async () => {
    await send(suite.broker.url, '/tokens/acme', TEST_SERVICE_KEY);
    const viaLane = await new Promise<string | undefined>((resolve, reject) => {
      request(`${probeUrl}/tokens/acme`, { headers: { authorization: `Bearer ${TEST_SERVICE_KEY}`, 'x-request-id': 'trace-42.a_b' } }, (res) => {
        res.resume();
        resolve(res.headers['x-request-id'] as string | undefined);
      })
        .on('error', reject)
        .end();
    });
    expect(viaLane).toBe('trace-42.a_b');
  });

  /** The audit trail so far (written out first), as a count per `actor action account provider outcome`. */
  const auditTrail = async (): Promise<Record<string, number>> => {
    // Twice: a flush the timer started earlier is joined, and may have drained before the last reads.
    await suite.broker.app.get(AuditWriter).flush();
    await suite.broker.app.get(AuditWriter).flush();
    const rows = await suite.db.query<Array<{ key: string; n: number }>>(
      `SELECT concat_ws(' ', actor, action, account, provider, outcome) AS key, sum(count)::int AS n FROM audit_events GROUP BY 1`,
    );
    return Object.fromEntries(rows.map((r) => [r.key, r.n]));
  };

  /** The token read counters as /metrics shows them (usage is recorded beside them, in TokenService.issue). */
  const readMetrics = async (): Promise<string[]> =>
    (await (await suite.broker.call('/metrics')).text()).split('\n').filter((line) => line.startsWith('token_broker_token_reads_total'));

  it('declines, recording nothing, every read it cannot answer from the cache as it is', async () => {
    // Nothing cached yet: even a plain read goes to the route.
    expect((await send(probeUrl, '/tokens/acme', TEST_SERVICE_KEY)).status).toBe(DECLINED);
    for (const account of ['acme', 'globex', 'initech']) {
      expect((await send(suite.broker.url, `/tokens/${account}?provider=${account === 'globex' ? 'copper' : 'copyai'}`, TEST_SERVICE_KEY)).status).toBe(200);
    }
    // Cached as having no connection: the route answers its 404.
    expect((await send(suite.broker.url, '/tokens/nobody', TEST_SERVICE_KEY)).status).toBe(404);
    const before = await auditTrail();
    const metricsBefore = await readMetrics();
    expect(metricsBefore.some((line) => line.includes('provider="copper",outcome="served"'))).toBe(true);
    expect(before['tests token.read globex copper served']).toBeGreaterThan(0);
    const declined: Array<[string, string | undefined, string?]> = [
      ['/tokens/acme', undefined],
      ['/tokens/acme', 'not-a-key'],
      ['/tokens/acme', TEST_ADMIN_KEY],
      ['/tokens/acme', TEST_SERVICE_KEY, 'HEAD'],
      ['/tokens/acme', TEST_SERVICE_KEY, 'POST'],
      ['/tokens/nobody', TEST_SERVICE_KEY],
      ['/tokens/bad%20id', TEST_SERVICE_KEY],
      ['/tokens/', TEST_SERVICE_KEY],
      ['/tokens/acme?provider=nope', TEST_SERVICE_KEY],
      ['/tokens/acme?provider=copper', TEST_SERVICE_KEY],
      ['/tokens/acme?minValidity=-1', TEST_SERVICE_KEY],
      ['/tokens/acme?unknown=1', TEST_SERVICE_KEY],
      ['/tokens/acme?provider=copyai&provider=copyai', TEST_SERVICE_KEY],
      // Two connections and no provider named: the route says provider_ambiguous.
      ['/tokens/initech', TEST_SERVICE_KEY],
      // A derived token (Copernica REST v4) is the route's.
      ['/tokens/initech?provider=copernica&api=v4', TEST_SERVICE_KEY],
      // Outside the narrow key's grants (copyai/acme*): not_granted is the route's answer.
      ['/tokens/globex', NARROW_KEY],
      ['/tokens/acme?provider=copper', NARROW_KEY],
      ['/tokens/acme?minValidity=1801', TEST_SERVICE_KEY],
      ['/tokens/not-here/acme', TEST_SERVICE_KEY],
      ['/health/live', undefined],
    ];
    for (const [path, key, method] of declined) {
      const status = (await send(probeUrl, path, key, method)).status;
      expect({ path, key: key?.slice(0, 4), method, status }).toEqual({ path, key: key?.slice(0, 4), method, status: DECLINED });
    }
    // No auth.denied, no token.read, no read counted in the metrics: the lane recorded nothing for what it declined.
    expect(await auditTrail()).toEqual(before);
    expect(await readMetrics()).toEqual(metricsBefore);

    // What it does answer, recorded as the route records it: inside the grants, with a provider or without one.
    expect((await send(probeUrl, '/tokens/acme', NARROW_KEY)).status).toBe(200);
    expect((await send(probeUrl, '/tokens/initech?provider=copyai', TEST_SERVICE_KEY)).status).toBe(200);
    expect((await send(probeUrl, '/tokens/acme?minValidity=1500', TEST_SERVICE_KEY)).status).toBe(200);
    const after = await auditTrail();
    const added = Object.fromEntries(Object.keys(after).flatMap((key) => (after[key] !== (before[key] ?? 0) ? [[key, after[key] - (before[key] ?? 0)]] : [])));
    expect(added).toEqual({ 'narrow token.read acme copyai served': 1, 'tests token.read acme copyai served': 1, 'tests token.read initech copyai served': 1 });
  });

  it('declines a revoked or expiring connection, which the route answers or refreshes', async () => {
    await send(suite.broker.url, '/tokens/acme', TEST_SERVICE_KEY);
    expect((await send(probeUrl, '/tokens/acme', TEST_SERVICE_KEY)).status).toBe(200);
    // Another replica's refresh pushed the expiry close: the cached row must not be served past minValidity.
    await suite.db.query(`UPDATE connections SET expires_at = now() + interval '30 seconds', version = version + 1 WHERE account = 'acme'`);
    await new Promise((resolve) => setTimeout(resolve, 150));
    await send(suite.broker.url, '/tokens/%61cme?minValidity=0', TEST_SERVICE_KEY);
    expect((await send(probeUrl, '/tokens/acme?minValidity=0', TEST_SERVICE_KEY)).status).toBe(200);
    expect((await send(probeUrl, '/tokens/acme', TEST_SERVICE_KEY)).status).toBe(DECLINED);

    const revoked = await suite.broker.call('/admin/connections/globex/revoke', { as: 'admin', method: 'POST' });
    expect(revoked.status).toBeLessThan(300);
    const viaRoute = await send(suite.broker.url, '/tokens/globex', TEST_SERVICE_KEY);
    expect(JSON.parse(viaRoute.body)).toMatchObject({ error: 'revoked' });
    expect((await send(probeUrl, '/tokens/globex', TEST_SERVICE_KEY)).status).toBe(DECLINED);
  });

  // Last: it starts the broker's drain, which nothing here ends.
  it('declines everything while the broker drains, so that each answer asks the client to reconnect', async () => {
    await send(suite.broker.url, '/tokens/acme', TEST_SERVICE_KEY);
    expect((await send(probeUrl, '/tokens/acme', TEST_SERVICE_KEY)).status).toBe(200);
    suite.broker.app.get(Drain).begin();
    expect((await send(probeUrl, '/tokens/acme', TEST_SERVICE_KEY)).status).toBe(DECLINED);
    const viaBroker = await send(suite.broker.url, '/tokens/acme', TEST_SERVICE_KEY);
    expect(viaBroker.status).toBe(200);
    expect(viaBroker.headers).toContain('connection: close');
  });
});

describe('GET /tokens/:account at LOG_LEVEL=debug', () => {
  // The request log's line for each read comes from Fastify's onResponse hook: no lane then.
  const logs = captureLogs('debug');
  const suite = useBrokerSuite({ env: { LOG_LEVEL: 'debug' }, logger: logs.logger });

  it('logs every cached read, because every read goes through the route', async () => {
    await connectAccount(suite.broker, 'acme', 'copyai');
    for (let i = 0; i < 3; i++) expect((await send(suite.broker.url, '/tokens/acme', TEST_SERVICE_KEY)).status).toBe(200);
    const logged = logs.entries().filter((entry) => entry.msg === 'request completed' && entry.path === '/tokens/acme' && entry.statusCode === 200);
    expect(logged).toHaveLength(3);
    expect(logged.every((entry) => entry.level === 20)).toBe(true);
  });
});
