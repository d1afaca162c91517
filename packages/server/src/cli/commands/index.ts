/**
 * The CLI's commands. Each module adds one command to the program; add new ones here.
 */
import type { Command } from 'commander'
import type { CliIo, ExitCode } from '../io.js'
import { registerBench } from './bench.js'
import { registerDel } from './del.js'
import { registerDoctor } from './doctor.js'
import { registerGet } from './get.js'
import { registerKeys } from './keys.js'
import { registerRun } from './run.js'
import { registerServe } from './serve.js'
import { registerSet } from './set.js'
import { registerStats } from './stats.js'
import { registerTtl } from './ttl.js'
import { registerWarm } from './warm.js'

/** Adds a command to the program; it reports its exit code through `done`. */
export type RegisterCommand = (program: Command, io: CliIo, done: (code: ExitCode) => void) => void

/** Every command of `flowcache`, in help order. */
export const COMMANDS: readonly RegisterCommand[] = [
  registerServe,
  registerRun,
  registerGet,
  registerSet,
  registerDel,
  registerKeys,
  registerTtl,
  registerStats,
  registerWarm,
  registerBench,
  registerDoctor,
]
