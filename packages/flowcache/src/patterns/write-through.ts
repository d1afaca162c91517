/**
 * Write-through: every write goes to the system of record first and to the cache only once the
 * target has accepted it, so the cache never holds a value the target rejected.
 */
import type { Duration } from '../core/duration.js'
import {
  KeySerializer,
  checkCanDelete,
  checkTarget,
  messageOf,
  targetError,
  type PatternHost,
  type WriteTarget,
} from './target.js'

/**
 * A writer that writes its target first, then the cache. Create it with `cache.writeThrough()`.
 *
 * When the target fails, the call throws `WriteTargetError` (`E_WRITE_TARGET`) and the key is
 * deleted from the cache: a target that failed by timing out may still have applied the write,
 * so neither the old nor the new value can be trusted, and the next read goes to the source.
 * Writes of one key through one writer are applied in call order, to the target and the cache.
 */
export class WriteThroughWriter<T = unknown> {
  readonly #host: PatternHost
  readonly #target: WriteTarget<T>
  readonly #serial = new KeySerializer()

  /** @internal use `cache.writeThrough(target)` */
  constructor(host: PatternHost, target: WriteTarget<T>) {
    checkTarget(target)
    this.#host = host
    this.#target = target
  }

  /**
   * Writes `value` to the target, then caches it (with `ttl`, else the namespace's default TTL).
   * Key, value and TTL are checked first, so a bad argument touches neither. Throws
   * `WriteTargetError` when the target fails (the key is then deleted from the cache), and
   * `StoreUnavailableError` when the target accepted the write but the cache could not store it.
   */
  async set(key: string, value: T, ttl?: Duration | { ttl?: Duration }): Promise<true> {
    this.#host.checkWrite(key, value, ttl)
    return this.#serial.run(key, async () => {
      try {
        await this.#target.write([{ key, value }])
      } catch (error) {
        await this.#invalidate(key)
        throw targetError(`write "${key}"`, error)
      }
      return this.#host.cache.set(key, value, ttl)
    })
  }

  /**
   * Deletes `key` from the target, then from the cache; resolves to whether the cache had it.
   * Needs a target with `delete`. Throws `WriteTargetError` when the target fails (the key is
   * then deleted from the cache anyway).
   */
  async delete(key: string): Promise<boolean> {
    const target = this.#target
    checkCanDelete(target, 'writeThrough')
    this.#host.checkKey(key)
    return this.#serial.run(key, async () => {
      try {
        await target.delete?.([key])
      } catch (error) {
        await this.#invalidate(key)
        throw targetError(`delete "${key}"`, error)
      }
      return this.#host.cache.delete(key)
    })
  }

  /** After a target failure: drop the cached copy, logging (not throwing) if that fails too. */
  async #invalidate(key: string): Promise<void> {
    try {
      await this.#host.cache.delete(key)
    } catch (error) {
      this.#host.logger.warn(
        `writeThrough: the target failed and "${key}" could not be deleted from the cache either; it may serve a stale value until its TTL: ${messageOf(error)}`,
      )
    }
  }
}
