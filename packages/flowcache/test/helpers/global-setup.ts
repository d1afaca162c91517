/**
 * Vitest global setup: find or start Redis and NATS JetStream (see ./services.ts), expose their
 * URLs as `process.env.FLOWCACHE_REDIS_URL` / `FLOWCACHE_NATS_URL` and via
 * `inject('redisUrl')` / `inject('natsUrl')`, and stop whatever we started at teardown.
 */
import type { TestProject } from 'vitest/node'
import type { ServerHandle } from './servers.js'
import { resolveService } from './services.js'

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const started: ServerHandle[] = []

  // Safety net: if the process dies without running the teardown, do not leave servers behind.
  const killLeftovers = (): void => {
    for (const server of started) server.kill('SIGKILL')
  }
  process.once('exit', killLeftovers)

  const teardown = async (): Promise<void> => {
    process.removeListener('exit', killLeftovers)
    await Promise.all(started.map((server) => server.stop()))
  }

  try {
    for (const name of ['redis', 'nats'] as const) {
      const service = await resolveService(name)
      if (service.server !== undefined) started.push(service.server)
      if (name === 'redis') {
        process.env.FLOWCACHE_REDIS_URL = service.url
        project.provide('redisUrl', service.url)
      } else {
        process.env.FLOWCACHE_NATS_URL = service.url
        project.provide('natsUrl', service.url)
      }
    }
  } catch (error) {
    await teardown()
    throw error
  }
  return teardown
}
