/**
 * @flowcache/server: the flow host. Its script sandbox; flows (the loader, the definition cache
 * and the runner); the host that triggers them; and the resource caches the host uses.
 */
export * from './sandbox/index.js'
export * from './flows/index.js'
export * from './host/index.js'
export * from './resources/index.js'
export * from './config/index.js'
export * from './http/index.js'
