/**
 * The `flowcache` command, run by Node with `--no-node-snapshot --import tsx` (the script
 * sandbox needs the flag; `flowcache.js` next to this file adds both when started plainly).
 */
import { main } from '../src/cli/main.js'

// Started with an IPC channel (as `flowcache.js` starts this file): the channel disconnects when
// the process that started this one is gone, even after a SIGKILL that left it no time to
// forward a signal. Stop then as on SIGTERM: `serve` shuts down gracefully (finishes requests in
// flight, flushes and closes the cache), other commands end as SIGTERM ends them. The channel is
// unreferenced so that it never keeps a finished command running; it still reports the
// disconnect while anything else keeps this process alive.
if (process.channel !== undefined) {
  process.once('disconnect', () => process.kill(process.pid, 'SIGTERM'))
  process.channel.unref()
}

process.exitCode = await main(process.argv.slice(2))
