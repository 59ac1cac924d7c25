#!/usr/bin/env node
// '@oclif/core/execute' rather than '@oclif/core': the index also loads what running a command does
// not need first, and checks oclif's own engines with semver (47 files) on every start. A command
// that needs more imports it itself, so `--version` and `--help` load only oclif's core.
import {execute} from '@oclif/core/execute'

await execute({dir: import.meta.url})
