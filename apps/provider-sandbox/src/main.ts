/**
 * `npm run sandbox`: runs the provider sandbox on 127.0.0.1:${SANDBOX_PORT:-4010} and prints
 * the environment the broker needs to use it. The client ids and secrets printed are the
 * sandbox's own fake values, nothing real. Never run this in production.
 */
import { startProviderSandbox } from './provider-sandbox';

function portFromEnv(value: string | undefined): number {
  if (value === undefined || value === '') return 4010;
  const port = Number(value);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error('SANDBOX_PORT must be an integer from 0 to 65535');
  }
  return port;
}

/** `KEY=value`, single-quoted when the value has characters a shell or a .env file would split on. */
function envLine(key: string, value: string): string {
  return /^[A-Za-z0-9_./:@-]*$/.test(value) ? `${key}=${value}` : `${key}='${value.replace(/'/g, `'\\''`)}'`;
}

async function main(): Promise<void> {
  const sandbox = await startProviderSandbox({ port: portFromEnv(process.env.SANDBOX_PORT) });
  const lines = [
    `provider-sandbox listening on ${sandbox.url} (fake Copper, Copernica and Copy.ai; never for production)`,
    `control API: ${sandbox.url}/_sandbox/stats, /_sandbox/configure, /_sandbox/fail, /_sandbox/reset`,
    '# broker environment:',
    ...Object.entries(sandbox.env()).map(([key, value]) => envLine(key, value)),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);

  const stop = (): void => {
    sandbox.close().then(
      () => process.exit(0),
      (err: unknown) => {
        console.error('provider-sandbox: failed to close', err);
        process.exit(1);
      },
    );
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

main().catch((err: unknown) => {
  console.error('provider-sandbox: failed to start:', err instanceof Error ? err.message : err);
  process.exitCode = 1;
});
