/**
 * @flowcache/server: the flow host. Its script sandbox, and flows: the loader, the definition
 * cache and the runner.
 */
export * from './sandbox/index.js'
export * from './flows/index.js'
