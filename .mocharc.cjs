// Runs the TypeScript tests through tsx; the root hooks create one throw-away database per run.
module.exports = {
  'node-option': ['import=tsx'],
  spec: ['test/**/*.test.ts'],
  require: ['test/support/root-hooks.ts'],
  reporter: 'test/support/counting-reporter.cjs',
  timeout: 30_000,
  exit: true,
}
