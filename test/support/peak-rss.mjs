// Preloaded into a child process (NODE_OPTIONS=--import=…/peak-rss.mjs): on exit, writes its peak
// resident set size in bytes to the file PEAK_RSS_FILE names, so a test can bound a run's memory.
import {writeFileSync} from 'node:fs'
import process from 'node:process'

process.on('exit', () => {
  if (process.env.PEAK_RSS_FILE) writeFileSync(process.env.PEAK_RSS_FILE, String(process.resourceUsage().maxRSS * 1024))
})
