import { DomainError, ErrorCode } from '@app/common';
import { AuthMode } from '@app/connections';
import { PROVIDER_DEFINITIONS, PROVIDER_IDS } from '@app/providers';
import { DEFAULT_MIN_VALIDITY_SEC, MAX_MIN_VALIDITY_SEC } from '@app/tokens';

export interface TokenQuery {
  provider?: string;
  minValiditySec: number;
  /** A derived token's API (`v4`: Copernica's REST v4 JWT); whether the provider has it is decided with the connection. */
  api?: string;
}

/** The `?api=` values some provider derives a token for. */
export const DERIVED_TOKEN_APIS: ReadonlyArray<string> = [...new Set(PROVIDER_DEFINITIONS.flatMap((d) => (d.derivedToken ? [d.derivedToken.api] : [])))];

/**
 * Reads `?provider=&minValidity=&api=`. Written by hand rather than as a class-validator DTO: this is
 * the hot path, and class-transformer + class-validator cost a large share of its throughput
 * (docs/decisions/0002-token-query-parsed-by-hand.md). The rules are the ones the DTO would have.
 */
export function parseTokenQuery(query: Record<string, unknown>): TokenQuery {
  const problems: string[] = [];
  for (const key of Object.keys(query)) {
    // Cut short like the admin routes': the name is caller input, and the answer one sentence.
    if (key !== 'provider' && key !== 'minValidity' && key !== 'api') problems.push(`property ${key.slice(0, 40)} should not exist`);
  }
  const { provider, minValidity, api } = query;
  if (provider !== undefined && (typeof provider !== 'string' || provider.length > 32)) {
    problems.push('provider must be one provider id');
  }
  let minValiditySec = DEFAULT_MIN_VALIDITY_SEC;
  if (minValidity !== undefined) {
    const value = typeof minValidity === 'string' && /^-?\d+$/.test(minValidity) ? Number(minValidity) : NaN;
    if (!Number.isInteger(value)) problems.push('minValidity must be a whole number of seconds');
    else if (value < 0) problems.push('minValidity must not be negative');
    else if (value > MAX_MIN_VALIDITY_SEC) problems.push(`minValidity must be at most ${MAX_MIN_VALIDITY_SEC} seconds`);
    else minValiditySec = value;
  }
  if (api !== undefined && (typeof api !== 'string' || !DERIVED_TOKEN_APIS.includes(api))) {
    problems.push(`api must be ${DERIVED_TOKEN_APIS.join(' or ')}`);
  }
  if (problems.length > 0) throw new DomainError(ErrorCode.ValidationFailed, problems.join('; '));
  return { provider: provider as string | undefined, minValiditySec, api: api as string | undefined };
}

const stringMap = { type: 'object', additionalProperties: { type: 'string' } } as const;

/**
 * The 200 answer of GET /tokens/:account (TokenService's IssuedToken) as JSON Schema, in the
 * OpenAPI 3.0 dialect (`nullable`) that fast-json-stringify also reads. One schema serves twice:
 * Fastify compiles it into the route's serializer (faster than JSON.stringify for this answer;
 * docs/decisions/0005-token-answer-compiled-schema.md), and documentTokenRead puts it in the
 * OpenAPI document. A field of IssuedToken missing here would be left out of the answer:
 * test/tokens/tokens.e2e-spec.ts checks the answer's keys.
 */
export const TOKEN_RESPONSE_SCHEMA = {
  type: 'object',
  required: ['account', 'provider', 'accessToken', 'tokenType', 'expiresAt', 'scope', 'apply', 'authMode'],
  properties: {
    account: { type: 'string', example: 'acme-42' },
    provider: { type: 'string', enum: [...PROVIDER_IDS] },
    accessToken: { type: 'string', description: 'the access token, or the API key of an api_key connection' },
    tokenType: { type: 'string', example: 'Bearer' },
    expiresAt: { type: 'string', format: 'date-time', nullable: true, description: 'null: the token does not expire' },
    scope: { type: 'string', nullable: true },
    apply: {
      type: 'object',
      description: 'how to present the token to the provider API: add these headers and query parameters',
      required: ['headers', 'query'],
      properties: { headers: { ...stringMap, example: { Authorization: 'Bearer …' } }, query: { ...stringMap, example: {} } },
    },
    authMode: {
      type: 'string',
      enum: Object.values(AuthMode),
      description: 'oauth2: a token from the connect dance; api_key: a static credential (accessToken is the key, tokenType "api_key")',
    },
  },
} as const;
