/**
 * The little HTTP the sandbox needs on top of node:http: an exact-path router, bounded body
 * reading and response helpers. Nothing here logs: request bodies and URLs carry secrets.
 */
import { IncomingMessage, ServerResponse } from 'node:http';

export type RouteHandler = (req: IncomingMessage, res: ServerResponse, query: URLSearchParams) => void | Promise<void>;

/** An error that already knows its answer (status and JSON body). */
export class HttpError extends Error {
  override readonly name = 'HttpError';

  constructor(
    readonly status: number,
    readonly body: Record<string, unknown>,
  ) {
    super(typeof body.error_description === 'string' ? body.error_description : `HTTP ${status}`);
  }
}

const MAX_BODY_BYTES = 64 * 1024;

export class Router {
  private readonly table = new Map<string, Map<string, RouteHandler>>();

  add(method: 'GET' | 'POST', path: string, handler: RouteHandler): void {
    let methods = this.table.get(path);
    if (!methods) {
      methods = new Map();
      this.table.set(path, methods);
    }
    if (methods.has(method)) throw new Error(`route ${method} ${path} registered twice`);
    methods.set(method, handler);
  }

  /** Splits the URL by hand: `new URL()` per request is measurable under a benchmark. */
  dispatch(req: IncomingMessage, res: ServerResponse): void {
    const raw = req.url ?? '/';
    const mark = raw.indexOf('?');
    const path = mark === -1 ? raw : raw.slice(0, mark);
    const query = new URLSearchParams(mark === -1 ? '' : raw.slice(mark + 1));
    const methods = this.table.get(path);
    if (!methods) {
      sendJson(res, 404, { error: 'not_found', error_description: 'no such endpoint in the provider sandbox' });
      return;
    }
    const handler = methods.get(req.method ?? 'GET');
    if (!handler) {
      sendJson(res, 405, { error: 'method_not_allowed', error_description: `use ${[...methods.keys()].join(' or ')}` }, {
        allow: [...methods.keys()].join(', '),
      });
      return;
    }
    try {
      const pending = handler(req, res, query);
      if (pending) pending.catch((err: unknown) => answerError(res, err));
    } catch (err) {
      answerError(res, err);
    }
  }
}

function answerError(res: ServerResponse, err: unknown): void {
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  if (err instanceof HttpError) {
    sendJson(res, err.status, err.body);
    return;
  }
  // Only the sandbox's own messages can reach here, never a request value.
  const description = err instanceof Error ? err.message : 'unexpected error';
  sendJson(res, 500, { error: 'server_error', error_description: description });
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const payload = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(payload),
    ...headers,
  });
  res.end(payload);
}

export function sendHtml(res: ServerResponse, status: number, html: string): void {
  res.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    'content-length': Buffer.byteLength(html),
    'cache-control': 'no-store',
  });
  res.end(html);
}

export function sendRedirect(res: ServerResponse, location: string): void {
  res.writeHead(302, { location, 'content-length': 0, 'cache-control': 'no-store' });
  res.end();
}

export function sendNoContent(res: ServerResponse): void {
  res.writeHead(204);
  res.end();
}

export function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        reject(new HttpError(413, { error: 'invalid_request', error_description: 'request body too large' }));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

/** An `application/x-www-form-urlencoded` body, as RFC 6749 requires of token and revocation requests. */
export async function readForm(req: IncomingMessage): Promise<URLSearchParams> {
  const type = (req.headers['content-type'] ?? '').toLowerCase();
  const body = await readBody(req);
  if (!type.startsWith('application/x-www-form-urlencoded')) {
    throw new HttpError(400, {
      error: 'invalid_request',
      error_description: 'expected an application/x-www-form-urlencoded body',
    });
  }
  return new URLSearchParams(body);
}

export async function readJson(req: IncomingMessage): Promise<unknown> {
  const body = await readBody(req);
  if (body.trim() === '') return {};
  try {
    return JSON.parse(body) as unknown;
  } catch {
    throw new HttpError(400, { error: 'invalid_request', error_description: 'body is not valid JSON' });
  }
}

/** `Authorization: Basic` credentials (RFC 6749 section 2.3.1: each part form-urlencoded first). */
export function basicCredentials(req: IncomingMessage): { id: string; secret: string } | undefined {
  const header = req.headers.authorization;
  if (!header || !/^basic /i.test(header)) return undefined;
  const decoded = Buffer.from(header.slice(6).trim(), 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon === -1) return undefined;
  try {
    const unescape = (s: string): string => decodeURIComponent(s.replace(/\+/g, ' '));
    return { id: unescape(decoded.slice(0, colon)), secret: unescape(decoded.slice(colon + 1)) };
  } catch {
    return undefined;
  }
}

export function bearerToken(req: IncomingMessage): string | undefined {
  const header = req.headers.authorization;
  if (!header || !/^bearer /i.test(header)) return undefined;
  const token = header.slice(7).trim();
  return token === '' ? undefined : token;
}

export function param(params: URLSearchParams, name: string): string | undefined {
  const value = params.get(name);
  return value === null || value === '' ? undefined : value;
}

export function escapeHtml(value: string): string {
  return value.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
