/**
 * Validation of everything a test or another process can tell the sandbox to do, shared by the
 * in-process API and the HTTP control API so both reject the same mistakes with the same words.
 */
import {
  FailingEndpoint,
  InjectedFailure,
  ProviderBehaviour,
  SANDBOX_PROVIDERS,
  SandboxProvider,
  SandboxUser,
} from './sandbox.types';

export class SandboxInputError extends Error {
  override readonly name = 'SandboxInputError';
}

type JsonObject = Record<string, unknown>;

export function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function parseProvider(value: unknown): SandboxProvider {
  const found = SANDBOX_PROVIDERS.find((p) => p === value);
  if (!found) throw new SandboxInputError(`provider must be one of ${SANDBOX_PROVIDERS.join(', ')}`);
  return found;
}

function nonNegativeNumber(key: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw new SandboxInputError(`${key} must be a non-negative number`);
  }
  return value;
}

function positiveSecondsOrNull(key: string, value: unknown): number | null {
  if (value === null) return null;
  if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0) {
    throw new SandboxInputError(`${key} must be a positive whole number of seconds, or null`);
  }
  return value;
}

function bool(key: string, value: unknown): boolean {
  if (typeof value !== 'boolean') throw new SandboxInputError(`${key} must be a boolean`);
  return value;
}

function stringOrNull(key: string, value: unknown, maxLength: number): string | null {
  if (value === null) return null;
  if (typeof value !== 'string' || value === '' || value.length > maxLength) {
    throw new SandboxInputError(`${key} must be a non-empty string of at most ${maxLength} characters, or null`);
  }
  return value;
}

/** A partial behaviour; unknown keys are refused so a typo in a test does not silently do nothing. */
export function parseBehaviourPatch(input: unknown, ignoredKeys: readonly string[] = []): Partial<ProviderBehaviour> {
  if (!isObject(input)) throw new SandboxInputError('behaviour must be an object');
  const patch: Partial<ProviderBehaviour> = {};
  for (const [key, value] of Object.entries(input)) {
    if (value === undefined || ignoredKeys.includes(key)) continue;
    switch (key) {
      case 'latencyMs':
        patch.latencyMs = nonNegativeNumber(key, value);
        break;
      case 'tokenLifetimeSec':
        patch.tokenLifetimeSec = positiveSecondsOrNull(key, value);
        break;
      case 'issueRefreshToken':
        patch.issueRefreshToken = bool(key, value);
        break;
      case 'rotateRefreshTokens':
        patch.rotateRefreshTokens = bool(key, value);
        break;
      case 'refreshTokenLifetimeSec':
        patch.refreshTokenLifetimeSec = positiveSecondsOrNull(key, value);
        break;
      case 'requirePkce':
        patch.requirePkce = bool(key, value);
        break;
      case 'requireBasicAuth':
        patch.requireBasicAuth = bool(key, value);
        break;
      case 'issuer':
        patch.issuer = stringOrNull(key, value, 2048);
        break;
      case 'authorizeError':
        patch.authorizeError = stringOrNull(key, value, 256);
        break;
      case 'derivedTokenLifetimeSec':
        patch.derivedTokenLifetimeSec = positiveSecondsOrNull(key, value);
        break;
      case 'derivedTokenAnswer':
        if (value !== 'text' && value !== 'json-string' && value !== 'json-object') {
          throw new SandboxInputError('derivedTokenAnswer must be text, json-string or json-object');
        }
        patch.derivedTokenAnswer = value;
        break;
      default:
        throw new SandboxInputError(`unknown behaviour "${key}"`);
    }
  }
  return patch;
}

export function parseFailure(input: unknown): InjectedFailure {
  if (!isObject(input)) throw new SandboxInputError('failure must be an object');
  if (input.kind === 'timeout') return { kind: 'timeout' };
  if (input.kind !== 'status') throw new SandboxInputError('failure.kind must be "status" or "timeout"');
  const { status, error, retryAfterSec } = input;
  if (typeof status !== 'number' || !Number.isInteger(status) || status < 400 || status > 599) {
    throw new SandboxInputError('failure.status must be an integer from 400 to 599');
  }
  const failure: InjectedFailure = { kind: 'status', status };
  if (error !== undefined) {
    if (typeof error !== 'string' || !/^[\x20-\x21\x23-\x5b\x5d-\x7e]{1,64}$/.test(error)) {
      throw new SandboxInputError('failure.error must be a short printable error code');
    }
    failure.error = error;
  }
  if (retryAfterSec !== undefined) {
    if (typeof retryAfterSec !== 'number' || !Number.isInteger(retryAfterSec) || retryAfterSec < 0) {
      throw new SandboxInputError('failure.retryAfterSec must be a non-negative integer');
    }
    failure.retryAfterSec = retryAfterSec;
  }
  return failure;
}

/** An API key a test chooses: printable, no spaces (it travels in headers and queries). */
export function parseApiKey(value: unknown): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || !/^[\x21-\x7e]{1,512}$/.test(value)) throw new SandboxInputError('apiKey must be 1 to 512 printable characters without spaces');
  return value;
}

export function parseEndpoint(value: unknown): FailingEndpoint {
  if (value === undefined || value === 'token') return 'token';
  if (value === 'authenticate') return value;
  throw new SandboxInputError('endpoint must be token or authenticate');
}

export function parseCount(value: unknown): number {
  if (value === undefined) return 1;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
    throw new SandboxInputError('count must be a positive integer');
  }
  return value;
}

export function parseExpiresInSec(value: unknown): number | null | undefined {
  if (value === undefined || value === null) return value;
  if (typeof value !== 'number' || !Number.isInteger(value)) {
    throw new SandboxInputError('expiresInSec must be a whole number of seconds, or null');
  }
  return value;
}

const USER_ID = /^[A-Za-z0-9._-]{1,64}$/;

export const DEFAULT_USER: Readonly<SandboxUser> = Object.freeze({
  id: 'u-1001',
  name: 'Ada Lovelace',
  email: 'ada@example.test',
  company: 'Analytical Engines',
});

/** The user `?sandbox_user=<id>` logs in: the default user, or one whose name and email derive from the id. */
export function userFromId(id: string): SandboxUser {
  if (!USER_ID.test(id)) throw new SandboxInputError('sandbox_user must match [A-Za-z0-9._-]{1,64}');
  if (id === DEFAULT_USER.id) return { ...DEFAULT_USER };
  return { id, name: `Sandbox User ${id}`, email: `${id}@example.test`, company: DEFAULT_USER.company };
}

/** A user given as an id (derived as above) or as a whole object. */
export function parseUser(value: unknown): SandboxUser | undefined {
  if (value === undefined) return undefined;
  if (typeof value === 'string') return userFromId(value);
  if (!isObject(value)) throw new SandboxInputError('user must be an id or {id, name, email, company}');
  const { id, name, email, company } = value;
  if (typeof id !== 'string' || !USER_ID.test(id)) throw new SandboxInputError('user.id must match [A-Za-z0-9._-]{1,64}');
  for (const [key, field] of Object.entries({ name, email, company })) {
    if (typeof field !== 'string' || field.length === 0 || field.length > 200) {
      throw new SandboxInputError(`user.${key} must be a non-empty string`);
    }
  }
  return { id, name: String(name), email: String(email), company: String(company) };
}
