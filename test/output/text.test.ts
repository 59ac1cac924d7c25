import {expect} from 'chai'

import {escapeControls, oneLine} from '../../src/lib/text.js'

describe('text helpers', () => {
  it('escapeControls shows terminal controls instead of passing them on', () => {
    const hostile = 'a\u001B]0;title\u0007b\u001B[1A\u001B[2Kc\rd\be\u009Bf\u2028g\u202Eh'
    const escaped = escapeControls(hostile)
    expect(escaped).to.equal('a\\x1B]0;title\\x07b\\x1B[1A\\x1B[2Kc\\x0Dd\\x08e\\x9Bf\\u2028g\\u202Eh')
    // eslint-disable-next-line no-control-regex
    expect(escaped).to.not.match(/[\u0000-\u001F\u007F-\u009F]/)
  })

  it('oneLine folds newlines, escapes the rest, and bounds the length of what it returns', () => {
    expect(oneLine('x\n ERROR 2024-01-01 FORGED LINE\r\n\u001B[32m✔ all good')).to.equal('x ERROR 2024-01-01 FORGED LINE \\x1B[32m✔ all good')
    const huge = oneLine('y'.repeat(200_000), 300)
    expect(huge).to.have.length(300)
    expect(huge.endsWith('…')).to.equal(true)
    expect(oneLine(`a${' '.repeat(500)}z`, 10)).to.equal('a z')
  })
})
