/**
 * `npm run demo`: the first five minutes. Starts the provider sandbox (fake Copper, Copernica and
 * Copy.ai) and the broker on an embedded PostgreSQL, all on 127.0.0.1, opens two connect links
 * per provider (OAuth for `demo-user`, an API key for `demo-keys`, with a key the sandbox accepts),
 * and prints the links with the curl that reads each token once the link has been followed.
 * Ctrl-C stops everything it started; nothing is left listening.
 *
 * Its state (database, generated secrets, the broker's log) lives in DATA_DIR (default
 * .data/demo), apart from `npm start`'s. It reads no other setting from the environment, so a
 * DATABASE_URL or production secret in the shell never reaches it. Never for production.
 */
import 'reflect-metadata';
import { AppConfig, loadConfig } from '@app/config';
import type { EmbeddedPostgresServer } from '@app/development';
import { BrokerLogger, createPino } from '@app/observability';
import { PROVIDER_DEFINITIONS } from '@app/providers';
import { Logger } from '@nestjs/common';
import { mkdirSync } from 'node:fs';
import { isAbsolute, join, relative, resolve } from 'node:path';
import pino from 'pino';
import { ProviderSandbox, startProviderSandbox } from '../../provider-sandbox/src/provider-sandbox';
import { RunningBroker, startBroker } from '../../token-broker/src/broker';

/**
 * The connect links the demo opens for each provider, one account per kind: an account holds one
 * connection per provider, OAuth or API key, and storing one replaces the other.
 */
const LINK_KINDS = [
  { authMode: 'oauth2', account: 'demo-user', step: "Connect with OAuth: open a link, press Continue, then Allow on the fake provider's page:" },
  { authMode: 'api_key', account: 'demo-keys', step: 'Or connect with an API key: open a link and enter what is shown beside it (the sandbox accepts it):' },
] as const;

function portFrom(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const port = Number(raw);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`${name} must be a port number (got "${raw}")`);
  return port;
}

/** A path as the user can type it from where they ran the command. */
function shown(path: string): string {
  const rel = relative(process.cwd(), path);
  return rel.startsWith('..') || isAbsolute(rel) ? path : rel;
}

/** Single quotes for a shell, so the printed commands run as printed. */
function shellQuote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

interface Running {
  sandbox?: ProviderSandbox;
  database?: EmbeddedPostgresServer;
  broker?: RunningBroker;
}

async function stopAll(running: Running): Promise<void> {
  // The broker first (it uses the other two), the database last.
  await running.broker?.close();
  await running.sandbox?.close();
  await running.database?.stop();
}

async function main(): Promise<void> {
  const brokerPort = portFrom('PORT', 3000);
  const sandboxPort = portFrom('SANDBOX_PORT', 4010);
  const dataDir = resolve(process.env.DATA_DIR ?? '.data/demo');
  mkdirSync(dataDir, { recursive: true });
  const logFile = join(dataDir, 'broker.log');
  // The terminal is for the walkthrough; the broker's own lines go to a file (readable, as on a terminal).
  const logger = new BrokerLogger(createPino('info', pino.destination({ dest: logFile, append: true, sync: true }), { pretty: true }));
  Logger.overrideLogger(logger);

  const running: Running = {};
  let stopping: Promise<void> | undefined;
  const stop = (signal: NodeJS.Signals): void => {
    // npm passes the terminal's Ctrl-C on as well: the second signal is the same request.
    if (stopping) return;
    process.stdout.write(`\n${signal}: stopping the broker, the sandbox and the database...\n`);
    stopping = stopAll(running).then(
      () => {
        process.stdout.write('Stopped. Nothing is left running.\n');
        process.exit(0);
      },
      (error: unknown) => {
        process.stderr.write(`Could not stop cleanly: ${(error as Error).message}\n`);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);

  let config: AppConfig;
  try {
    process.stdout.write('Starting the provider sandbox, PostgreSQL and the broker (about 10 seconds)...\n');
    running.sandbox = await startProviderSandbox({ port: sandboxPort, host: '127.0.0.1' });
    // Started here rather than by the broker, so the demo knows (and prints) where it listens.
    const { EmbeddedPostgresServer } = await import('@app/development');
    running.database = new EmbeddedPostgresServer({ dataDir });
    const databaseUrl = await running.database.start();
    const publicUrl = `http://127.0.0.1:${brokerPort}`;
    const loaded = loadConfig({
      NODE_ENV: 'development',
      HOST: '127.0.0.1',
      PORT: String(brokerPort),
      PUBLIC_URL: publicUrl,
      DATA_DIR: dataDir,
      DATABASE_URL: databaseUrl,
      LOG_LEVEL: 'info',
      ...running.sandbox.env(),
    });
    config = loaded.config;
    for (const notice of loaded.notices) logger.warn(notice, 'Demo');
    if (stopping) return;
    running.broker = await startBroker(config, { logger });
  } catch (error) {
    await stopAll(running).catch(() => undefined);
    throw error;
  }
  if (stopping) return;
  const { broker, sandbox, database } = running as Required<Running>;
  const serviceKey = config.serviceApiKeys[0].secret;

  const keyFile = shown(join(dataDir, 'dev-secrets.env'));
  const width = Math.max(...PROVIDER_DEFINITIONS.map((d) => d.displayName.length));
  const steps: string[] = [];
  const curls: string[] = [];
  for (const [index, kind] of LINK_KINDS.entries()) {
    steps.push(`${index + 1}. ${kind.step}`, '');
    curls.push(`   # ${kind.authMode === 'api_key' ? 'API key' : 'OAuth'} (${kind.account})`);
    for (const definition of PROVIDER_DEFINITIONS) {
      const response = await fetch(`${broker.url}/connect-sessions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${serviceKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({ account: kind.account, provider: definition.id, ...(kind.authMode === 'api_key' ? { authMode: kind.authMode } : {}) }),
      });
      if (response.status !== 201) throw new Error(`the broker refused a ${definition.displayName} connect session: ${response.status} ${await response.text()}`);
      const { connectUrl } = (await response.json()) as { connectUrl: string };
      let enter = '';
      if (kind.authMode === 'api_key') {
        const { apiKey, userEmail } = sandbox.registerApiKey(definition.id);
        enter = `   key ${apiKey}${definition.staticCredential.userEmail === 'required' ? `, email ${userEmail}` : ''}`;
      }
      steps.push(`   ${definition.displayName.padEnd(width)}  ${connectUrl}${enter}`);
      curls.push(`   curl -s -H "Authorization: Bearer $KEY" '${broker.url}/tokens/${kind.account}?provider=${definition.id}'`);
    }
    steps.push('');
  }

  const lines = [
    '',
    'token-broker demo: everything below runs on this machine; the providers are fakes (the sandbox).',
    '',
    `   broker     ${broker.url}   API docs ${broker.url}/docs, log ${shown(logFile)}`,
    `   sandbox    ${sandbox.url}   fake ${PROVIDER_DEFINITIONS.map((d) => d.displayName).join(', ')}`,
    `   database   ${new URL(database.url).host}   embedded PostgreSQL, data in ${shown(dataDir)}`,
    '',
    ...steps,
    `${LINK_KINDS.length + 1}. Read the tokens the broker now keeps (it refreshes OAuth tokens before they expire), with the`,
    '   service key generated for this demo:',
    '',
    `   KEY=$(sed -n 's/^SERVICE_API_KEYS=[^:]*://p' ${shellQuote(keyFile)})`,
    ...curls,
    '',
    'Each link works once and for 30 minutes; restart the demo for fresh ones.',
    'Ctrl-C stops everything.',
    '',
  ];
  process.stdout.write(lines.join('\n'));
}

main().catch((error: unknown) => {
  const { code, port } = error as { code?: string; port?: number };
  const hint = code === 'EADDRINUSE' ? `\nPort ${port} is taken: choose others, e.g. PORT=3100 SANDBOX_PORT=4110 npm run demo` : '';
  process.stderr.write(`demo failed: ${(error as Error).message}${hint}\n`);
  process.exit(1);
});
