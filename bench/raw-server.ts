/**
 * The baseline: a bare `node:http` server answering GET /tokens/:account with the same JSON a
 * broker token read returns (same fields, same sizes: a broker answer is passed in as the
 * template and only the account is swapped in per request). Run as its own process by
 * bench/run.ts; prints its URL on stdout once listening.
 */
import { createServer } from 'node:http';
import { AddressInfo } from 'node:net';

const template = JSON.parse(process.env.BENCH_RAW_TEMPLATE ?? '{}') as Record<string, unknown>;
const PREFIX = '/tokens/';

const server = createServer((req, res) => {
  const url = req.url ?? '/';
  if (req.method !== 'GET' || !url.startsWith(PREFIX)) {
    res.writeHead(404, { 'content-type': 'application/json; charset=utf-8' }).end('{"statusCode":404}');
    return;
  }
  const end = url.indexOf('?');
  const account = decodeURIComponent(url.slice(PREFIX.length, end === -1 ? undefined : end));
  const body = JSON.stringify({ ...template, account });
  res.writeHead(200, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
  });
  res.end(body);
});

server.keepAliveTimeout = 72_000;
server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => {
  process.stdout.write(`raw-server listening on http://127.0.0.1:${(server.address() as AddressInfo).port}\n`);
});

process.on('SIGTERM', () => {
  server.closeAllConnections();
  server.close(() => process.exit(0));
});
