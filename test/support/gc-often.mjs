// Preloaded into a child process (NODE_OPTIONS=--import=…/gc-often.mjs) to run a full garbage
// collection every 100 ms: what a long-running process gets sooner or later, made certain, so a
// test can prove that nothing (an abort, a timeout) depends on an object the collector may take.
import {setInterval} from 'node:timers'
import {setFlagsFromString} from 'node:v8'
import {runInNewContext} from 'node:vm'

setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc')
setInterval(() => gc(), 100).unref()
