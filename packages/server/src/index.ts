/**
 * @flowcache/server: the flow host. For now, its script sandbox.
 */
export * from './sandbox/index.js'
export * from './resources/index.js'
