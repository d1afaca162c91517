/**
 * @flowcache/server: the flow host. For now, its script sandbox.
 */
export * from './sandbox/index.js'
