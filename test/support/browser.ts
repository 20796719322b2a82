/**
 * Real-browser helpers for the end-to-end suites: headless Chromium from Debian's `chromium`
 * package (`apt-get install -y chromium`), driven by playwright-core, and a tiny stand-in for
 * the product that a connect flow's `returnTo` sends the user back to.
 */
import { existsSync } from 'node:fs';
import { createServer, Server } from 'node:http';
import { AddressInfo } from 'node:net';
import { Browser, chromium } from 'playwright-core';

export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-quic',
];

/** Launches headless Chromium; fails with the install command when it is missing. */
export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(`no Chromium at ${CHROMIUM_PATH}: install it with "apt-get update && apt-get install -y chromium" (or set CHROMIUM_PATH)`);
  }
  return chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS });
}

export interface ReturnApp {
  /** e.g. http://localhost:41234 (bound to 127.0.0.1, named by `localhost` like a dev front end). */
  origin: string;
  close(): Promise<void>;
}

function escapeHtml(value: string): string {
  return value.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/**
 * The product's "done" page: shows the query string it was opened with, as a definition list
 * (`#params`) and raw (`#query`), so a test can read where the browser landed.
 */
export async function startReturnApp(): Promise<ReturnApp> {
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const rows = [...url.searchParams].map(([k, v]) => `<dt>${escapeHtml(k)}</dt><dd id="param-${escapeHtml(k)}">${escapeHtml(v)}</dd>`).join('');
    const html =
      '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Back in the app</title></head>' +
      `<body><h1>Back in the app</h1><pre id="query">${escapeHtml(url.search)}</pre><dl id="params">${rows}</dl></body></html>`;
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
    res.end(html);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    origin: `http://localhost:${port}`,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        server.closeAllConnections();
      }),
  };
}
