import { DomainError, ErrorCode } from '@app/common';
import { ProviderDefinition, StaticCredential } from '@app/providers';

/** What a caller asks to store, once its input is checked. */
export interface CredentialInput {
  credential: StaticCredential;
  /** When the key stops working (Copy.ai lets keys expire after 12 months); null: it does not. */
  expiresAt: Date | null;
  /** false: store without asking the provider (the answer then says `skipped`). */
  verify: boolean;
}

/** The fields an admin may send (PUT /admin/connections/:account/credentials). */
const ADMIN_FIELDS: ReadonlyArray<string> = ['apiKey', 'userEmail', 'expiresAt', 'verify'];
/** The fields of the end user's form: only what the provider needs from them. */
export const FORM_FIELDS: ReadonlyArray<string> = ['apiKey', 'userEmail'];

/** Printable ASCII without spaces: what fits in a header or a query value unchanged. Long enough for any provider's key. */
const API_KEY = /^[\x21-\x7e]{1,2048}$/;
const EMAIL = /^[^\s@]{1,64}@[^\s@]{1,255}$/;
const ISO_DATE_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})$/;

/**
 * Checks a static credential as given, listing every problem in one message (400
 * validation_failed). Never repeats a value in a message: the key is a secret, and an email a
 * caller mistyped need not travel back. Leading and trailing whitespace, which pasting a key
 * often brings along, is dropped. `allowed` names the fields this way in accepts.
 */
export function parseCredentialInput(definition: ProviderDefinition, body: unknown, now: Date, allowed: ReadonlyArray<string> = ADMIN_FIELDS): CredentialInput {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new DomainError(ErrorCode.ValidationFailed, 'the body must be a JSON object with apiKey (and userEmail, expiresAt, verify where they apply)');
  }
  const fields = body as Record<string, unknown>;
  const problems = Object.keys(fields)
    .filter((key) => !allowed.includes(key))
    .map((key) => `property ${key.slice(0, 40)} should not exist`);
  const name = definition.displayName;

  const apiKey = trimmed(fields.apiKey);
  if (apiKey === undefined) problems.push('apiKey is required');
  else if (typeof apiKey !== 'string' || !API_KEY.test(apiKey)) problems.push('apiKey must be 1 to 2048 printable characters without spaces');

  const userEmail = trimmed(fields.userEmail);
  if (definition.staticCredential.userEmail === 'required') {
    if (userEmail === undefined) problems.push(`userEmail is required: ${name} wants the email of the user who generated the key`);
    else if (typeof userEmail !== 'string' || userEmail.length > 320 || !EMAIL.test(userEmail)) problems.push('userEmail must be an email address');
  } else if (userEmail !== undefined) {
    problems.push(`userEmail should not be given: ${name} takes the key alone`);
  }

  let expiresAt: Date | null = null;
  if (fields.expiresAt !== undefined && fields.expiresAt !== null) {
    const value = fields.expiresAt;
    const parsed = typeof value === 'string' && ISO_DATE_TIME.test(value) ? Date.parse(value) : NaN;
    if (Number.isNaN(parsed)) problems.push('expiresAt must be an ISO 8601 date-time with a time zone, e.g. 2027-01-31T00:00:00Z');
    else if (parsed <= now.getTime()) problems.push('expiresAt is in the past: that key no longer works');
    else expiresAt = new Date(parsed);
  }

  if (fields.verify !== undefined && typeof fields.verify !== 'boolean') problems.push('verify must be true or false');

  if (problems.length > 0) throw new DomainError(ErrorCode.ValidationFailed, problems.join('; '));
  return {
    credential: { apiKey: apiKey as string, userEmail: definition.staticCredential.userEmail === 'required' ? (userEmail as string) : null },
    expiresAt,
    verify: fields.verify !== false,
  };
}

/** A string without its surrounding whitespace; an empty one counts as absent. Anything else as it is. */
function trimmed(value: unknown): unknown {
  if (typeof value !== 'string') return value === null ? undefined : value;
  const inner = value.trim();
  return inner === '' ? undefined : inner;
}
