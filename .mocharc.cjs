// Runs the TypeScript tests through tsx; the root hooks create one throw-away database per run.
// Test files named on the command line (`npm test -- test/ranges.test.ts`) run alone: the whole
// suite is the spec only when none is named. Under CI a committed .only or .skip fails the run.
const named = process.argv.slice(2).some((arg) => /\.test\.ts$/.test(arg))
// As test/support/root-hooks.ts reads CI: set, and not 0 or false.
const ci = Boolean(process.env.CI) && !['0', 'false'].includes(process.env.CI.toLowerCase())

module.exports = {
  'node-option': ['import=tsx'],
  ...(named ? {} : {spec: ['test/**/*.test.ts']}),
  require: ['test/support/root-hooks.ts'],
  reporter: 'test/support/counting-reporter.cjs',
  timeout: 30_000,
  exit: true,
  'forbid-only': ci,
  'forbid-pending': ci,
}
