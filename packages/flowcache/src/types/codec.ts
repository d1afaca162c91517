/**
 * A value codec turns cache values into the bytes a store keeps, and back. flowcache's default,
 * `jsonCodec`, writes readable JSON and round-trips every type a cache value may have.
 */
export interface Codec {
  /** Short name, recorded in docs and diagnostics (`json`). */
  readonly name: string
  /**
   * Encodes a value. Throws `UnsupportedValueError` (`E_UNSUPPORTED_VALUE`) for functions,
   * symbols, class instances, cycles, top-level `undefined` and nesting deeper than the codec allows.
   */
  encode(value: unknown): Uint8Array
  /** Decodes bytes produced by `encode`. Throws `DecodeError` (`E_DECODE`) on anything else. */
  decode(bytes: Uint8Array): unknown
  /**
   * Validates a value like `encode` and returns its encoded size in bytes without keeping the
   * bytes. In-process stores use it to check limits and account memory without storing bytes.
   */
  encodedSize(value: unknown): number
}
