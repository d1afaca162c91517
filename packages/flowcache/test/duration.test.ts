import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { formatDuration, parseDuration } from '../src/core/duration.js'
import { InvalidArgumentError } from '../src/errors.js'

describe('parseDuration', () => {
  it('reads numbers as milliseconds and strings with units', () => {
    expect(parseDuration(250)).toBe(250)
    expect(parseDuration('1.5s')).toBe(1500)
    expect(parseDuration('90s')).toBe(90_000)
    expect(parseDuration('5m')).toBe(300_000)
    expect(parseDuration('1h')).toBe(3_600_000)
    expect(parseDuration('7d')).toBe(604_800_000)
    expect(parseDuration('1h30m')).toBe(5_400_000)
    expect(parseDuration('250ms')).toBe(250)
    expect(parseDuration(' 2 S ')).toBe(2000)
  })

  it('rounds fractions of a millisecond up, so a tiny TTL never becomes zero', () => {
    expect(parseDuration(0.2)).toBe(1)
    expect(parseDuration('0.5ms')).toBe(1)
  })

  it.each([
    0,
    -1,
    -0,
    Number.NaN,
    Number.POSITIVE_INFINITY,
    '0s',
    '-5s',
    '',
    '  ',
    'abc',
    '10',
    '5 minutes',
    '1x',
    's',
    null,
    {},
    true,
  ])('rejects %s with a typed error instead of treating it as "no expiry"', (input) => {
    expect(() => parseDuration(input)).toThrow(InvalidArgumentError)
    try {
      parseDuration(input)
    } catch (error) {
      expect((error as InvalidArgumentError).code).toBe('E_INVALID_ARGUMENT')
      expect((error as Error).message).toMatch(/^ttl /)
    }
  })

  it('tells the user to add a unit when a string has none', () => {
    expect(() => parseDuration('60')).toThrow(/needs a unit/)
  })

  it('names the option in the message', () => {
    expect(() => parseDuration(-1, 'lease')).toThrow(/^lease /)
  })

  it('every positive number of ms round-trips through formatDuration', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 10 * 365 * 86_400_000 }), (ms) => {
        expect(parseDuration(formatDuration(ms))).toBe(ms)
      }),
      { numRuns: 2000 },
    )
  })
})
