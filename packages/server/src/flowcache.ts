/**
 * The flowcache library as the server sees it. Everything in this package imports flowcache
 * through this module, so that the whole package switches to the built `flowcache` package in
 * one place; until then it uses the library's sources in the workspace.
 */
export * from '../../flowcache/src/index.js'
