/**
 * `flowcache/testing`: what a store author needs to prove a store. Run {@link runStoreContract}
 * from a test file; pass a {@link ManualClock} to stores that accept an injected clock.
 */
export {
  runStoreContract,
  storeContractGroups,
  type StoreContractContext,
  type StoreContractGroup,
  type StoreContractOptions,
  type TestApi,
} from './store-contract.js'
export { ManualClock } from '../core/clock.js'
export { runLockContract } from './lock-contract.js'
export type { LockContractOptions, LockContractSetup } from './lock-contract.js'
export { runRateLimitContract } from './rate-limit-contract.js'
export type {
  RateLimitContractOptions,
  RateLimitContractRequest,
  RateLimitContractSetup,
} from './rate-limit-contract.js'
