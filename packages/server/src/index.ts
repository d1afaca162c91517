/**
 * @flowcache/server: the flow host: its script sandbox and the host that triggers flows.
 */
export * from './sandbox/index.js'
export * from './host/index.js'
export * from './resources/index.js'
