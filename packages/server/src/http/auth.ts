/**
 * Bearer-token checks of the HTTP API. The token is compared in constant time (over SHA-256
 * digests, so lengths never leak) and is only ever read from the `Authorization` header.
 */
import { createHash, timingSafeEqual } from 'node:crypto'

/** SHA-256 of a text. */
function digest(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest()
}

/** Checks `Authorization` headers against one token. */
export class TokenCheck {
  readonly #expected: Buffer

  constructor(token: string) {
    this.#expected = digest(token)
  }

  /**
   * Whether `header` is `Bearer <token>` with the right token. The comparison takes the same
   * time whatever the presented token is.
   */
  accepts(header: string | undefined): boolean {
    if (typeof header !== 'string') return false
    const match = /^Bearer[ ]+(\S+)\s*$/i.exec(header)
    const presented = match?.[1]
    if (presented === undefined) return false
    return timingSafeEqual(digest(presented), this.#expected)
  }
}
