// @ts-check
import eslint from '@eslint/js';
import tseslint from 'typescript-eslint';

/*
 * Import boundaries. Each folder lists what it must never import; an import is matched as
 * written, relative (`../../apps/...`) or through baseUrl (`apps/...`). ESLint replaces a rule's
 * options per file rather than merging them, so each group of files gets its whole list.
 */
const under = (dir) => `^(\\.{1,2}/)*${dir}(/|$)`;
const APPS = { regex: under('apps'), message: 'Libraries, scripts and migrations never import an app: move what both need into a library (libs/<name>, @app/<name>).' };
const TEST = { regex: under('test'), message: 'Production code never imports test/.' };
const TEST_BEYOND_SUPPORT = {
  regex: `${under('test')}(?!support/)`,
  message: 'A library spec may use test/support (the shared real Postgres), never a suite or anything else under test/.',
};
const BENCH = { regex: under('bench'), message: 'Only the benchmark imports bench/: what tests and the benchmark share lives in test/support.' };
const MIGRATIONS = { regex: under('migrations'), message: 'Import migrations through @app/migrations.' };
const DEVELOPMENT_BY_PATH = { regex: '(^|/)development/src(/|$)', message: 'Reach the development library only through @app/development.' };
/** Type-only imports are erased at compile time, so they load nothing; a value import would load the development library in production. */
const developmentLibrary = (allowTypeImports) => ({
  name: '@app/development',
  allowTypeImports,
  message:
    'Development-only code (the embedded PostgreSQL server) stays off the production path: the broker loads it with `await import(...)` only when DATABASE_URL is unset.',
});
const imports = (patterns, paths = []) => ({ '@typescript-eslint/no-restricted-imports': ['error', { patterns, paths }] });

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', '.data/**', 'coverage/**', 'eslint.config.mjs', 'jest.config.js', 'test/support/shims/**'] },
  eslint.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: { attributes: false } }],
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/require-await': 'off',
      '@typescript-eslint/no-extraneous-class': 'off',
      'no-console': ['error', { allow: ['warn', 'error'] }],
      // A closed union is switched on case by case, without a default that would hide a new member.
      '@typescript-eslint/switch-exhaustiveness-check': [
        'error',
        { allowDefaultCaseForExhaustiveSwitch: false, considerDefaultExhaustiveForUnions: false, requireDefaultForNonUnion: true },
      ],
    },
  },
  {
    files: ['**/*.spec.ts', '**/*.db-spec.ts', 'test/**/*.ts', 'bench/**/*.ts', 'scripts/**/*.ts'],
    rules: {
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      '@typescript-eslint/unbound-method': 'off',
      'no-console': 'off',
    },
  },
  { files: ['libs/**/*.ts'], rules: imports([APPS, TEST, BENCH, MIGRATIONS, DEVELOPMENT_BY_PATH], [developmentLibrary(false)]) },
  { files: ['libs/**/*.spec.ts', 'libs/**/*.db-spec.ts'], rules: imports([APPS, TEST_BEYOND_SUPPORT, BENCH, MIGRATIONS, DEVELOPMENT_BY_PATH], [developmentLibrary(false)]) },
  { files: ['apps/**/*.ts'], rules: imports([TEST, BENCH, MIGRATIONS, DEVELOPMENT_BY_PATH], [developmentLibrary(true)]) },
  { files: ['scripts/**/*.ts', 'migrations/**/*.ts'], rules: imports([APPS, TEST, BENCH, MIGRATIONS]) },
  { files: ['test/**/*.ts'], rules: imports([BENCH, MIGRATIONS]) },
  { files: ['bench/**/*.ts'], rules: imports([MIGRATIONS]) },
);
