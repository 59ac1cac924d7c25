// `node --import ./test/support/peak-rss.mjs …` writes the process's peak resident set size (kB,
// process.resourceUsage().maxRSS) to the file named by $PEAK_RSS_FILE as it exits: how a test
// bounds a command's memory without timing anything.
import {writeFileSync} from 'node:fs'
import process from 'node:process'

process.on('exit', () => writeFileSync(process.env.PEAK_RSS_FILE, `${process.resourceUsage().maxRSS}\n`))
