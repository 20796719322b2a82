/**
 * The HTTP surface every caller relies on: JSON errors, request ids, API docs, and the rule
 * that every route states who may call it.
 */
import { Access, ACCESS_KEY } from '@app/auth';
import { RequestMethod } from '@nestjs/common';
import { METHOD_METADATA, PATH_METADATA } from '@nestjs/common/constants';
import { DiscoveryService, MetadataScanner, ModulesContainer } from '@nestjs/core';
import { startTestBroker, TestBroker } from '../support/test-broker';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * Routes the broker serves outside Nest's controllers, on purpose: the public API docs, and the
 * token read, which Fastify serves directly for speed and which checks the service key itself
 * (apps/token-broker/src/tokens/token-read.route.ts; proven below).
 */
const NON_CONTROLLER_ROUTES: Array<{ methods: string[]; path: RegExp }> = [
  { methods: ['GET', 'HEAD'], path: /^\/docs(\/.*|-json|-yaml)?$/ },
  { methods: ['GET', 'HEAD'], path: /^\/tokens\/:account$/ },
];

interface ControllerRoute {
  method: string;
  path: string;
  handler: string;
  /** Problems with the route's access rule; empty when it declares exactly one. */
  problems: string[];
}

function joinPath(...parts: string[]): string {
  const joined = `/${parts.join('/')}`.replace(/\/+/g, '/');
  return joined.length > 1 ? joined.replace(/\/$/, '') : joined;
}

function isAccess(value: unknown): value is Access {
  const access = value as Access | undefined;
  return access?.kind === 'public' || (access?.kind === 'role' && (access.role === 'service' || access.role === 'admin'));
}

const describeAccess = (access: Access): string => (access.kind === 'public' ? '@Public()' : access.role === 'service' ? '@ServiceAccess()' : '@AdminAccess()');

/** Every route handler of every controller Nest knows, with the access rule it resolves to. */
function controllerRoutes(broker: TestBroker): ControllerRoute[] {
  const discovery = new DiscoveryService(broker.app.get(ModulesContainer));
  const scanner = new MetadataScanner();
  const routes: ControllerRoute[] = [];
  for (const wrapper of discovery.getControllers()) {
    const controller = wrapper.metatype as (new (...args: never[]) => object) | undefined;
    if (!controller) continue;
    const prefixes = [Reflect.getMetadata(PATH_METADATA, controller) ?? '/'].flat() as string[];
    const classRule: unknown = Reflect.getMetadata(ACCESS_KEY, controller);
    for (const name of scanner.getAllMethodNames(controller.prototype)) {
      const handler = (controller.prototype as Record<string, unknown>)[name] as object;
      const paths = Reflect.getMetadata(PATH_METADATA, handler) as string | string[] | undefined;
      const method = Reflect.getMetadata(METHOD_METADATA, handler) as RequestMethod | undefined;
      if (paths === undefined || method === undefined) continue;

      const methodRule: unknown = Reflect.getMetadata(ACCESS_KEY, handler);
      const problems: string[] = [];
      const effective = methodRule ?? classRule;
      if (effective === undefined) problems.push('declares no access rule (@Public(), @ServiceAccess() or @AdminAccess())');
      else if (!isAccess(effective)) problems.push(`has an unrecognised access rule ${JSON.stringify(effective)}`);
      if (isAccess(methodRule) && isAccess(classRule) && JSON.stringify(methodRule) !== JSON.stringify(classRule)) {
        problems.push(`declares ${describeAccess(classRule)} on the class and ${describeAccess(methodRule)} on the method; declare one`);
      }
      for (const prefix of prefixes) {
        for (const path of [paths].flat()) {
          routes.push({ method: RequestMethod[method], path: joinPath(prefix, path), handler: `${controller.name}.${name}`, problems });
        }
      }
    }
  }
  return routes;
}

/** Every route Fastify serves, read from its route tree (`printRoutes`): `{method, path}` pairs. */
function fastifyRoutes(broker: TestBroker): Array<{ method: string; path: string }> {
  const tree = broker.app.getHttpAdapter().getInstance().printRoutes({ commonPrefix: false });
  const stack: string[] = [];
  const routes: Array<{ method: string; path: string }> = [];
  for (const line of tree.split('\n')) {
    const match = /^((?:│ {3}| {4})*)[├└]── (.+?)(?: \(([A-Z, ]+)\))?$/.exec(line);
    if (!match) continue;
    const depth = match[1].length / 4;
    stack.length = depth;
    const path = (stack[depth - 1] ?? '') + match[2];
    stack[depth] = path;
    for (const method of match[3]?.split(', ') ?? []) routes.push({ method, path });
  }
  return routes;
}

describe('HTTP surface', () => {
  let broker: TestBroker;

  beforeAll(async () => {
    broker = await startTestBroker();
  });

  afterAll(async () => {
    await broker?.close();
  });

  describe('errors', () => {
    it('answers an unknown route with 404 route_not_found JSON', async () => {
      for (const init of [{ method: 'GET' }, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } }]) {
        const response = await broker.call('/no-such-route', init);
        expect(response.status).toBe(404);
        expect(response.headers.get('content-type')).toMatch(/^application\/json/);
        expect(await response.json()).toEqual({ statusCode: 404, error: 'route_not_found', message: `no route ${init.method} /no-such-route` });
      }
    });

    it('does not repeat the query string of an unknown route, which may hold a secret', async () => {
      const response = await broker.call('/no-such-route?code=oauth-code-123&access_token=tok-456');
      expect(response.status).toBe(404);
      const text = await response.text();
      expect(text).not.toContain('oauth-code-123');
      expect(text).not.toContain('tok-456');
    });
  });

  describe('request ids', () => {
    it('are on every response, fresh for each request', async () => {
      const ids: string[] = [];
      for (const path of ['/health/live', '/health/ready', '/no-such-route', '/docs-json']) {
        const response = await broker.call(path);
        await response.arrayBuffer();
        const id = response.headers.get('x-request-id');
        expect({ path, id }).toEqual({ path, id: expect.stringMatching(UUID) });
        ids.push(id as string);
      }
      expect(new Set(ids).size).toBe(ids.length);
    });

    it('echo a valid incoming x-request-id, on success and on error', async () => {
      for (const path of ['/health/live', '/no-such-route']) {
        const response = await broker.call(path, { headers: { 'x-request-id': 'upstream-7f3a.c0ffee_01' } });
        await response.arrayBuffer();
        expect(response.headers.get('x-request-id')).toBe('upstream-7f3a.c0ffee_01');
      }
    });

    it('replace an incoming id that is not a plain token', async () => {
      for (const given of ['two words', 'x'.repeat(65), '<script>', 'a/b']) {
        const response = await broker.call('/health/live', { headers: { 'x-request-id': given } });
        await response.arrayBuffer();
        expect(response.headers.get('x-request-id')).toMatch(UUID);
      }
    });
  });

  describe('route inventory', () => {
    it('finds the controllers (a walk that finds nothing would prove nothing)', () => {
      const routes = controllerRoutes(broker);
      expect(routes).toEqual(
        expect.arrayContaining([
          expect.objectContaining({ method: 'GET', path: '/health/live' }),
          expect.objectContaining({ method: 'GET', path: '/health/ready' }),
        ]),
      );
    });

    it('every controller route declares exactly one access rule', () => {
      const offenders = controllerRoutes(broker)
        .filter((route) => route.problems.length > 0)
        .map((route) => `${route.method} ${route.path} (${route.handler}) ${route.problems.join('; ')}`);
      expect(offenders).toEqual([]);
    });

    it('every route Fastify serves goes through a controller (and so through the guard), except the API docs and the token read', () => {
      const served = fastifyRoutes(broker);
      expect(served).toEqual(expect.arrayContaining([{ method: 'GET', path: '/health/ready' }]));

      const declared = new Set(controllerRoutes(broker).map((r) => `${r.method} ${r.path}`));
      const unguarded = served
        .filter((route) => !NON_CONTROLLER_ROUTES.some((allowed) => allowed.methods.includes(route.method) && allowed.path.test(route.path)))
        .filter((route) => {
          // Fastify answers HEAD for every GET route by itself.
          const method = route.method === 'HEAD' ? 'GET' : route.method;
          return !declared.has(`${method} ${route.path}`) && !declared.has(`ALL ${route.path}`);
        })
        .map((route) => `${route.method} ${route.path}`);
      expect(unguarded).toEqual([]);
      expect(served).toEqual(expect.arrayContaining([{ method: 'GET', path: '/tokens/:account' }]));
    });

    it('the token read, served outside the controllers, wants a service key before anything else', async () => {
      const status = async (init: RequestInit & { as?: 'service' | 'admin' }, method = 'GET') => {
        const response = await broker.call('/tokens/nobody-here', { ...init, method });
        const text = await response.text();
        return method === 'HEAD' ? { status: response.status } : { status: response.status, error: (JSON.parse(text) as { error: string }).error };
      };
      expect(await status({})).toEqual({ status: 401, error: 'unauthorized' });
      expect(await status({ headers: { authorization: 'Basic c2VydmljZTprZXk=' } })).toEqual({ status: 401, error: 'unauthorized' });
      expect(await status({ headers: { authorization: 'Bearer not-a-key-of-this-broker' } })).toEqual({ status: 401, error: 'unauthorized' });
      expect(await status({ as: 'admin' })).toEqual({ status: 403, error: 'forbidden' });
      expect(await status({}, 'HEAD')).toEqual({ status: 401 });
      // With the service key the request gets through to the lookup.
      expect(await status({ as: 'service' })).toEqual({ status: 404, error: 'connection_not_found' });
    });
  });

  describe('API docs', () => {
    it('/docs serves the OpenAPI UI', async () => {
      const response = await broker.call('/docs');
      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toMatch(/^text\/html/);
      expect(await response.text()).toMatch(/swagger/i);
    });

    it('/docs-json lists the probes and the bearer scheme', async () => {
      const response = await broker.call('/docs-json');
      expect(response.status).toBe(200);
      const document = (await response.json()) as { openapi: string; paths: Record<string, unknown>; components: { securitySchemes: Record<string, unknown> } };
      expect(document.openapi).toMatch(/^3\./);
      expect(Object.keys(document.paths)).toEqual(expect.arrayContaining(['/health/live', '/health/ready', '/tokens/{account}', '/connect-sessions']));
      expect(Object.values(document.components.securitySchemes)).toEqual(expect.arrayContaining([expect.objectContaining({ type: 'http', scheme: 'bearer' })]));
    });

    it('/docs-json describes the token read (served outside the controllers) like a controller route', async () => {
      type Operation = { security: unknown; parameters: Array<{ name: string; in: string }>; responses: Record<string, { content?: Record<string, { schema: { $ref?: string } }> }> };
      const document = (await (await broker.call('/docs-json')).json()) as {
        paths: Record<string, { get?: Operation }>;
        components: { securitySchemes: Record<string, unknown>; schemas: Record<string, { properties: Record<string, unknown> }> };
      };
      const read = document.paths['/tokens/{account}'].get!;
      expect(read.security).toEqual([{ bearer: [] }]);
      expect(Object.keys(document.components.securitySchemes)).toContain('bearer');
      expect(read.parameters.map((p) => `${p.in} ${p.name}`)).toEqual(['path account', 'query provider', 'query minValidity', 'query api']);
      expect(read.responses['200'].content!['application/json'].schema.$ref).toBe('#/components/schemas/TokenResponse');
      expect(Object.keys(document.components.schemas.TokenResponse.properties).sort()).toEqual(['accessToken', 'account', 'apply', 'authMode', 'expiresAt', 'provider', 'scope', 'tokenType']);
      expect(Object.keys(read.responses)).toEqual(['200', '400', '401', '403', '404', '409', '500', '502', '503']);
    });
  });
});
