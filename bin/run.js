#!/usr/bin/env -S node --max-semi-space-size=4 --heap-growing-percent=30
// The young generation capped at 4 MB a semi-space (V8's default grows to 16): a big day's pages
// survive a scavenge or two, and the default then settles ~40 MB higher for no gain in speed.
// The old generation grows by 30% before its next collection (V8 lets it double): a page waiting
// for the store's COPY is promoted, and with the default a stored big day peaked ~45 MB higher
// (bench/run.ts big-day). `audit-logger …`, the Procfile and npm's links all run this line.
// '@oclif/core/execute' rather than '@oclif/core': the index also loads what running a command does
// not need first, and checks oclif's own engines with semver (47 files) on every start. A command
// that needs more imports it itself, so `--version` and `--help` load only oclif's core.
import {execute} from '@oclif/core/execute'

await execute({dir: import.meta.url})
