import { register } from 'tsconfig-paths';

/** Runs outside jest's module system, so the @app/* aliases are registered by hand. */
register({ baseUrl: `${__dirname}/../..`, paths: { '@app/*': ['libs/*/src'] } });

export default async function globalSetup(): Promise<void> {
  const { prepareTestDatabase } = await import('./test-database');
  const { embedded } = await prepareTestDatabase();
  (globalThis as { __TEST_POSTGRES__?: unknown }).__TEST_POSTGRES__ = embedded;
}
