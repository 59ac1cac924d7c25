#!/usr/bin/env -S node --max-semi-space-size=4
// The young generation capped at 4 MB a semi-space (V8's default grows to 16): a big day's pages
// survive a scavenge or two, and the default then settles ~40 MB higher for no gain in speed
// (bench/run.ts big-day). `audit-logger …`, the Procfile and npm's links all run this line.
// '@oclif/core/execute' rather than '@oclif/core': the index also loads what running a command does
// not need first, and checks oclif's own engines with semver (47 files) on every start. A command
// that needs more imports it itself, so `--version` and `--help` load only oclif's core.
import {execute} from '@oclif/core/execute'

await execute({dir: import.meta.url})
