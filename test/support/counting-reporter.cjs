// Mocha's spec reporter, closing with the plain line CI reads: "N passed, N failed".
const Mocha = require('mocha')

class CountingReporter extends Mocha.reporters.Spec {
  constructor(runner, options) {
    super(runner, options)
    runner.once('end', () => {
      const {passes, failures, pending} = this.stats
      const skipped = pending > 0 ? `, ${pending} skipped` : ''
      process.stdout.write(`\n${passes} passed, ${failures} failed${skipped}\n`)
    })
  }
}

module.exports = CountingReporter
