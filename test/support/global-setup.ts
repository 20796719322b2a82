import { loadConfig, register } from 'tsconfig-paths';

/** Runs outside jest's module system, so tsconfig.json's @app/* aliases are registered by hand. */
const tsconfig = loadConfig(`${__dirname}/../..`);
if (tsconfig.resultType === 'failed') throw new Error(`cannot read tsconfig.json: ${tsconfig.message}`);
register({ baseUrl: tsconfig.absoluteBaseUrl, paths: tsconfig.paths });

export default async function globalSetup(): Promise<void> {
  const { prepareTestDatabase } = await import('./test-database');
  const { embedded } = await prepareTestDatabase();
  (globalThis as { __TEST_POSTGRES__?: unknown }).__TEST_POSTGRES__ = embedded;
}
