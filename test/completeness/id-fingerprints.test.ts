/**
 * The fingerprint sets an archive check tells held and repeated ids apart with (no database):
 * exact for every fingerprint held, growing without losing any, and only as exact as the hash
 * itself, which is why the caller checks every "held" answer against the store.
 */
import {expect} from 'chai'

import {type Fingerprint, fingerprint, idFingerprints} from '../../src/lib/completeness/id-fingerprints.js'
import {mulberry32} from '../fake-heroku/events.js'

/** A deterministic stream of 32-bit numbers (the fake's mulberry32), so a failure can be run again as it was. */
function numbers(seed: number): () => number {
  const next = mulberry32(seed)
  return () => Math.floor(next() * 2 ** 32)
}

/** `count` distinct UUID-like ids (as Heroku's event ids look), from `seed`. */
function uuidLike(count: number, seed: number): string[] {
  const next = numbers(seed)
  const hex = (n: number, digits: number) => n.toString(16).padStart(8, '0').slice(0, digits)
  const ids = new Set<string>()
  while (ids.size < count) {
    ids.add(`${hex(next(), 8)}-${hex(next(), 4)}-4${hex(next(), 3)}-8${hex(next(), 3)}-${hex(next(), 8)}${hex(next(), 4)}`)
  }

  return [...ids]
}

describe('id fingerprints', () => {
  const ids = uuidLike(100_000, 1)
  const added = new Set(ids)
  const others = uuidLike(100_000, 2).filter((id) => !added.has(id))

  it('holds every id added and none of 100,000 others', () => {
    expect(others.length, 'two sets of ids with nothing in common').to.be.greaterThan(99_990)
    const held = idFingerprints()
    for (const id of ids) held.add(fingerprint(id, 42))
    expect(held.size).to.equal(ids.length)
    const missed = ids.filter((id) => !held.has(fingerprint(id, 42)))
    expect(missed, 'added, not found').to.deep.equal([])
    const found = others.filter((id) => held.has(fingerprint(id, 42)))
    expect(found, 'never added, found').to.deep.equal([])
  })

  it('keeps everything it held as it grows', () => {
    const held = idFingerprints()
    // It starts with 1024 slots and doubles each time it would be more than half full: past 512,
    // 1024, 2048, … fingerprints. Every earlier one is looked for just after each growth.
    const growths = new Set([513, 1025, 2049, 4097, 8193, 16_385])
    const prints: Fingerprint[] = []
    for (const id of ids.slice(0, 20_000)) {
      const print = fingerprint(id)
      held.add(print)
      prints.push(print)
      if (growths.has(prints.length)) {
        expect(held.size, `size after ${prints.length}`).to.equal(prints.length)
        expect(prints.filter((earlier) => !held.has(earlier)), `lost after growing at ${prints.length}`).to.deep.equal([])
      }
    }

    expect(held.size).to.equal(20_000)
    expect(prints.filter((print) => !held.has(print))).to.deep.equal([])
  })

  it('can hold the fingerprint [0, 0], and tells it from its neighbours', () => {
    const held = idFingerprints()
    expect(held.has([0, 0]), 'an empty set').to.equal(false)
    held.add([0, 0])
    expect(held.has([0, 0])).to.equal(true)
    expect(held.size).to.equal(1)
    expect(held.has([0, 1])).to.equal(false)
    expect(held.has([1, 0])).to.equal(false)
    // Still held once the table grew around it.
    for (const id of ids.slice(0, 3000)) held.add(fingerprint(id))
    expect(held.has([0, 0])).to.equal(true)
    expect(held.size).to.equal(3001)
  })

  it('tells apart fingerprints that share a half, or a slot', () => {
    const held = idFingerprints()
    // The same first half: the same slot, told apart by the second.
    held.add([5, 1])
    held.add([5, 2])
    // A first half 1024 apart: the same slot in a table of 1024, told apart by the first half.
    held.add([5 + 1024, 1])
    held.add([-7, 9])
    expect(held.size).to.equal(4)
    for (const print of [[5, 1], [5, 2], [1029, 1], [-7, 9]] as Fingerprint[]) expect(held.has(print), String(print)).to.equal(true)
    for (const print of [[5, 3], [1029, 2], [5 + 2048, 1], [-7, 8], [7, 9]] as Fingerprint[]) expect(held.has(print), String(print)).to.equal(false)
  })

  it('counts distinct fingerprints only', () => {
    const held = idFingerprints()
    for (let round = 0; round < 3; round++) for (const id of ids.slice(0, 700)) held.add(fingerprint(id, 9))
    expect(held.size).to.equal(700)
    held.add([3, 4])
    held.add([3, 4])
    expect(held.size).to.equal(701)
  })

  it('fingerprints an id the same way for a seed, and differently for another seed', () => {
    const id = ids[0]
    expect(fingerprint(id, 7)).to.deep.equal(fingerprint(id, 7))
    expect(fingerprint(id, 7)).to.not.deep.equal(fingerprint(id, 8))
    expect(fingerprint(id)).to.deep.equal(fingerprint(id, 0))
    for (const print of [fingerprint(id, 7), fingerprint(id, 8)]) for (const half of print) expect(Number.isInteger(half) && half === (half | 0), 'a 32-bit half').to.equal(true)
    // Both halves move with the seed, and a set filled under one seed holds none of the same ids under another.
    const differ = ids.slice(0, 1000).filter((each) => {
      const [a1, b1] = fingerprint(each, 1)
      const [a2, b2] = fingerprint(each, 2)
      return a1 !== a2 && b1 !== b2
    })
    expect(differ).to.have.length(1000)
    const held = idFingerprints()
    for (const each of ids.slice(0, 1000)) held.add(fingerprint(each, 1))
    expect(ids.slice(0, 1000).filter((each) => held.has(fingerprint(each, 2)))).to.deep.equal([])
  })

  it('says it holds an id never added when the hash collides: a "held" answer must be checked exactly', () => {
    const colliding = (_id: string, _seed: number): Fingerprint => [1, 2]
    const held = idFingerprints()
    held.add(colliding('stored-event', 0))
    expect(held.has(colliding('archive-only-event', 0)), 'an id never added passes for a held one').to.equal(true)
    expect(held.size).to.equal(1)
    // The real hash tells these two apart.
    held.add(fingerprint('stored-event', 0))
    expect(held.has(fingerprint('archive-only-event', 0))).to.equal(false)
  })
})
