/**
 * The HTTP control API under /_sandbox/*, for a demo or a benchmark that runs the sandbox in
 * another process: the same operations as the in-process ProviderSandbox, as JSON.
 */
import { HttpError, RouteHandler, Router, readJson, sendJson, sendNoContent } from './http-kit';
import {
  SandboxInputError,
  isObject,
  parseApiKey,
  parseBehaviourPatch,
  parseCount,
  parseEndpoint,
  parseExpiresInSec,
  parseFailure,
  parseProvider,
  parseUser,
} from './sandbox-input';
import { ProviderSandbox } from './sandbox.types';

async function jsonObject(req: Parameters<RouteHandler>[0]): Promise<Record<string, unknown>> {
  const body = await readJson(req);
  if (!isObject(body)) throw new SandboxInputError('body must be a JSON object');
  return body;
}

/** Input mistakes become 400 invalid_request with the validator's message. */
function guarded(handler: RouteHandler): RouteHandler {
  return async (req, res, query) => {
    try {
      await handler(req, res, query);
    } catch (err) {
      if (err instanceof SandboxInputError) {
        throw new HttpError(400, { error: 'invalid_request', error_description: err.message });
      }
      throw err;
    }
  };
}

export function registerControlRoutes(router: Router, sandbox: ProviderSandbox): void {
  router.add('GET', '/_sandbox/stats', (_req, res) => sendJson(res, 200, sandbox.stats()));
  router.add('GET', '/_sandbox/env', (_req, res) => sendJson(res, 200, sandbox.env()));

  router.add(
    'POST',
    '/_sandbox/configure',
    guarded(async (req, res) => {
      const body = await jsonObject(req);
      sandbox.configure(parseProvider(body.provider), parseBehaviourPatch(body, ['provider']));
      sendNoContent(res);
    }),
  );

  router.add(
    'POST',
    '/_sandbox/fail',
    guarded(async (req, res) => {
      const body = await jsonObject(req);
      const provider = parseProvider(body.provider);
      const failure = parseFailure(body.failure);
      const endpoint = parseEndpoint(body.endpoint);
      if (body.untilCleared === true) {
        if (body.count !== undefined) throw new SandboxInputError('give either count or untilCleared, not both');
        sandbox.failUntilCleared(provider, failure, endpoint);
      } else {
        sandbox.failNext(provider, failure, parseCount(body.count), endpoint);
      }
      sendNoContent(res);
    }),
  );

  router.add(
    'POST',
    '/_sandbox/clear-failures',
    guarded(async (req, res) => {
      const body = await jsonObject(req);
      sandbox.clearFailures(body.provider === undefined ? undefined : parseProvider(body.provider));
      sendNoContent(res);
    }),
  );

  router.add('POST', '/_sandbox/reset', (_req, res) => {
    sandbox.reset();
    sendNoContent(res);
  });

  router.add('POST', '/_sandbox/reset-stats', (_req, res) => {
    sandbox.resetStats();
    sendNoContent(res);
  });

  router.add(
    'POST',
    '/_sandbox/api-keys',
    guarded(async (req, res) => {
      const body = await jsonObject(req);
      const registered = sandbox.registerApiKey(parseProvider(body.provider), { user: parseUser(body.user), apiKey: parseApiKey(body.apiKey) });
      sendJson(res, 200, registered, { 'cache-control': 'no-store' });
    }),
  );

  router.add(
    'POST',
    '/_sandbox/issue-tokens',
    guarded(async (req, res) => {
      const body = await jsonObject(req);
      const tokens = sandbox.issueTokens(parseProvider(body.provider), {
        expiresInSec: parseExpiresInSec(body.expiresInSec),
        user: parseUser(body.user),
      });
      sendJson(res, 200, tokens, { 'cache-control': 'no-store' });
    }),
  );
}
