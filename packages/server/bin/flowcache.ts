/**
 * The `flowcache` command, run by Node with `--no-node-snapshot --import tsx` (the script
 * sandbox needs the flag; `flowcache.js` next to this file adds both when started plainly).
 */
import { main } from '../src/cli/main.js'

process.exitCode = await main(process.argv.slice(2))
