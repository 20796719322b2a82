/**
 * Who may call what, over real HTTP: a tiny Nest app on Fastify with the real AuthModule and
 * the broker's ErrorFilter, one route per access rule (and one with none, which must stay shut).
 * It lives with the app because the answers' statuses and JSON shape are the app's (libs/auth
 * throws domain errors and never imports the app).
 */
import { Caller, AdminAccess, AuthModule, CurrentCaller, Public, ServiceAccess } from '@app/auth';
import { Clock, ManualClock } from '@app/common';
import { ConfigModule, loadConfig } from '@app/config';
import { AuditLog, AuditRecord } from '@app/observability';
import { Controller, Get, Global, INestApplication, Module } from '@nestjs/common';
import { APP_FILTER } from '@nestjs/core';
import { FastifyAdapter, NestFastifyApplication } from '@nestjs/platform-fastify';
import { Test } from '@nestjs/testing';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ErrorFilter } from './error.filter';

const SERVICE_KEY = `svc-${randomBytes(18).toString('base64url')}`;
const ADMIN_KEY = `adm-${randomBytes(18).toString('base64url')}`;
const UNKNOWN_KEY = `unk-${randomBytes(18).toString('base64url')}`;

@Controller('probe')
class ProbeController {
  @Get('public')
  @Public()
  open(): { ok: true } {
    return { ok: true };
  }

  @Get('service')
  @ServiceAccess()
  service(@CurrentCaller() caller: Caller): { caller: Caller } {
    return { caller };
  }

  @Get('admin')
  @AdminAccess()
  admin(@CurrentCaller() caller: Caller): { caller: Caller } {
    return { caller };
  }

  @Get('undeclared')
  undeclared(): { ok: true } {
    return { ok: true };
  }
}

/** A class-level rule covers every method of the controller. */
@Controller('admin-area')
@AdminAccess()
class AdminAreaController {
  @Get('stats')
  stats(): { ok: true } {
    return { ok: true };
  }
}

/** What the broker's ObservabilityModule and CoreModule give AuthModule, with the audit records kept here. */
const audited: AuditRecord[] = [];
@Global()
@Module({
  providers: [
    { provide: Clock, useValue: new ManualClock(Date.UTC(2026, 5, 1, 12)) },
    { provide: AuditLog, useFactory: (clock: Clock) => new AuditLog(clock, [{ write: (record) => audited.push(record) }]), inject: [Clock] },
  ],
  exports: [Clock, AuditLog],
})
class AuditTrailModule {}

describe('ApiKeyGuard over HTTP', () => {
  let app: INestApplication;
  let baseUrl: string;
  let dataDir: string;

  const call = (path: string, authorization?: string): Promise<Response> =>
    fetch(`${baseUrl}${path}`, { headers: authorization === undefined ? {} : { authorization } });

  async function expectError(response: Response, statusCode: number, error: string): Promise<Record<string, unknown>> {
    expect(response.status).toBe(statusCode);
    expect(response.headers.get('content-type')).toMatch(/^application\/json/);
    const text = await response.text();
    for (const secret of [SERVICE_KEY, ADMIN_KEY, UNKNOWN_KEY]) expect(text).not.toContain(secret);
    const body = JSON.parse(text) as Record<string, unknown>;
    expect(body).toEqual({ statusCode, error, message: expect.any(String) });
    expect((body.message as string).length).toBeGreaterThan(0);
    return body;
  }

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'tb-auth-'));
    const { config } = loadConfig({
      NODE_ENV: 'test',
      DATA_DIR: dataDir,
      TOKEN_ENCRYPTION_KEYS: `k1:${randomBytes(32).toString('base64')}`,
      SERVICE_API_KEYS: `reports:${SERVICE_KEY}`,
      ADMIN_API_KEYS: `oncall:${ADMIN_KEY}`,
    });
    const moduleRef = await Test.createTestingModule({
      imports: [ConfigModule.forRoot(config), AuditTrailModule, AuthModule],
      controllers: [ProbeController, AdminAreaController],
      providers: [{ provide: APP_FILTER, useClass: ErrorFilter }],
    }).compile();
    app = moduleRef.createNestApplication<NestFastifyApplication>(new FastifyAdapter(), { logger: false });
    await app.listen(0, '127.0.0.1');
    baseUrl = (await app.getUrl()).replace('[::1]', '127.0.0.1');
  });

  afterAll(async () => {
    await app?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('lets anyone call a public route, with or without a key', async () => {
    expect((await call('/probe/public')).status).toBe(200);
    expect((await call('/probe/public', `Bearer ${UNKNOWN_KEY}`)).status).toBe(200);
  });

  it('opens service routes to a service key and tells the handler who called', async () => {
    const response = await call('/probe/service', `Bearer ${SERVICE_KEY}`);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ caller: { name: 'reports', role: 'service' } });
  });

  it('opens admin routes to an admin key', async () => {
    const response = await call('/probe/admin', `Bearer ${ADMIN_KEY}`);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ caller: { name: 'oncall', role: 'admin' } });
    expect((await call('/admin-area/stats', `Bearer ${ADMIN_KEY}`)).status).toBe(200);
  });

  it('accepts the scheme in any case', async () => {
    expect((await call('/probe/service', `bearer ${SERVICE_KEY}`)).status).toBe(200);
  });

  it('never lets a service key open an admin route', async () => {
    await expectError(await call('/probe/admin', `Bearer ${SERVICE_KEY}`), 403, 'forbidden');
    await expectError(await call('/admin-area/stats', `Bearer ${SERVICE_KEY}`), 403, 'forbidden');
  });

  it('does not let an admin key read service routes', async () => {
    await expectError(await call('/probe/service', `Bearer ${ADMIN_KEY}`), 403, 'forbidden');
  });

  it.each([
    ['no Authorization header', undefined],
    ['an empty header', ''],
    ['another scheme', `Basic ${Buffer.from(`reports:${SERVICE_KEY}`).toString('base64')}`],
    ['the bare key without a scheme', SERVICE_KEY],
    ['a scheme without a key', 'Bearer'],
    ['two words after the scheme', `Bearer ${SERVICE_KEY} ${ADMIN_KEY}`],
    ['an unknown key', `Bearer ${UNKNOWN_KEY}`],
    ['a prefix of a real key', `Bearer ${SERVICE_KEY.slice(0, -1)}`],
  ])('answers 401 JSON, echoing nothing, for %s', async (_case, authorization) => {
    await expectError(await call('/probe/service', authorization), 401, 'unauthorized');
    await expectError(await call('/probe/admin', authorization), 401, 'unauthorized');
  });

  it('audits every refusal as auth.denied: the key’s name and kind when it is one, else anonymous; never a key', async () => {
    audited.length = 0;
    await call('/probe/service');
    await call('/probe/service?session=abc', `Bearer ${UNKNOWN_KEY}`);
    await call('/probe/admin', `Bearer ${SERVICE_KEY}`);
    await call('/probe/service', `Bearer ${SERVICE_KEY}`);
    await call('/probe/undeclared', `Bearer ${ADMIN_KEY}`);

    const denial = (actor: string, actorKind: string, outcome: string, path: string) =>
      expect.objectContaining({ action: 'auth.denied', actor, actorKind, outcome, requestId: expect.any(String) as string, detail: { method: 'GET', path } });
    expect(audited).toEqual([
      denial('anonymous', 'anonymous', 'unauthenticated', '/probe/service'),
      denial('anonymous', 'anonymous', 'unauthenticated', '/probe/service'),
      denial('reports', 'service', 'forbidden', '/probe/admin'),
      denial('anonymous', 'anonymous', 'forbidden', '/probe/undeclared'),
    ]);
    const text = JSON.stringify(audited);
    for (const secret of [SERVICE_KEY, ADMIN_KEY, UNKNOWN_KEY]) expect(text).not.toContain(secret);
  });

  it('keeps a route without an access rule closed, even to an admin', async () => {
    await expectError(await call('/probe/undeclared'), 403, 'forbidden');
    await expectError(await call('/probe/undeclared', `Bearer ${ADMIN_KEY}`), 403, 'forbidden');
    await expectError(await call('/probe/undeclared', `Bearer ${SERVICE_KEY}`), 403, 'forbidden');
  });
});
