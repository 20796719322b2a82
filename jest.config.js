/**
 * Jest projects, named for what they need:
 * - unit: `*.spec.ts` beside the code in apps/ and libs/; pure, no database.
 * - database: `*.db-spec.ts`; repositories, engines and the embedded server against real
 *   Postgres with the real migrations.
 * - e2e: `*.e2e-spec.ts` under test/; the broker booted with the sandbox providers, driven over HTTP.
 */
const moduleNameMapper = {
  // The same aliases as tsconfig.json's paths.
  '^@app/migrations$': '<rootDir>/migrations',
  '^@app/([a-z-]+)$': '<rootDir>/libs/$1/src',
  // ESM-only dependency of @fastify/static; see the shim for why this is safe.
  '^content-disposition$': '<rootDir>/test/support/shims/content-disposition.js',
};
const transform = { '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.json' }] };
const common = { rootDir: __dirname, moduleFileExtensions: ['ts', 'js', 'json'], transform, moduleNameMapper, testEnvironment: 'node' };

// The database and e2e projects share one Postgres, prepared once per run. Jest runs a project's
// global setup only when a test of that project is selected (and a shared file once), so a run
// of the unit project alone starts no database.
const withDatabase = {
  globalSetup: '<rootDir>/test/support/global-setup.ts',
  globalTeardown: '<rootDir>/test/support/global-teardown.ts',
};

module.exports = {
  testTimeout: 60000,
  // Suites share one database and truncate it: run them one at a time.
  maxWorkers: 1,
  projects: [
    { ...common, displayName: 'unit', testMatch: ['<rootDir>/apps/**/*.spec.ts', '<rootDir>/libs/**/*.spec.ts'] },
    {
      ...common,
      ...withDatabase,
      displayName: 'database',
      testMatch: ['<rootDir>/{apps,libs,test}/**/*.db-spec.ts'],
      // Each database suite leaves the shared database empty for whichever suite runs next.
      setupFilesAfterEnv: ['<rootDir>/test/support/database-suite.ts'],
    },
    { ...common, ...withDatabase, displayName: 'e2e', testMatch: ['<rootDir>/test/**/*.e2e-spec.ts'] },
  ],
};
