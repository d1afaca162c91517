import * as vitest from 'vitest'

import { memoryStore } from '../../src/stores/memory/index.js'
import { runStoreContract } from '../../src/testing/index.js'

runStoreContract(vitest, {
  name: 'memory',
  clock: 'manual',
  createStore: ({ clock }) => memoryStore({ clock, history: 4 }),
})
