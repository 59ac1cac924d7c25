import js from '@eslint/js'
import tseslint from 'typescript-eslint'

export default tseslint.config(
  {ignores: ['dist/', 'node_modules/', 'test-artifacts/']},
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', {argsIgnorePattern: '^_', varsIgnorePattern: '^_', ignoreRestSiblings: true}],
      'no-console': 'off',
    },
  },
  {
    // chai's property assertions (`.to.be.empty`) read as bare expressions.
    files: ['test/**/*.ts'],
    rules: {'@typescript-eslint/no-unused-expressions': 'off'},
  },
  {
    // Migrations see the database as it was when they were written, not today's schema types.
    files: ['src/migrations/*.ts', 'src/lib/db/migrate.ts'],
    rules: {'@typescript-eslint/no-explicit-any': 'off'},
  },
  {
    files: ['**/*.cjs'],
    languageOptions: {sourceType: 'commonjs', globals: {require: 'readonly', module: 'writable', process: 'readonly'}},
    rules: {'@typescript-eslint/no-require-imports': 'off'},
  },
  {
    files: ['templates/static/*.js'],
    languageOptions: {globals: {document: 'readonly', HTMLInputElement: 'readonly'}},
  },
  {
    files: ['bin/*.js', 'eslint.config.js', 'scripts/*.mjs', 'bench/*.mjs'],
    languageOptions: {globals: {process: 'readonly', console: 'readonly', URL: 'readonly', fetch: 'readonly'}},
  },
)
