import type {Hook} from '@oclif/core'

import {EXIT} from '../lib/errors.js'
import {closestName} from '../lib/suggest.js'
import {oneLine} from '../lib/text.js'

/**
 * oclif's `command_not_found` hook: `audit-logger help process` (and `help`, `help db status`)
 * shows that help, as heroku/cli users type it; any other unknown command gets one line naming the
 * nearest command (`proces` → process) and exit 2, like every usage error.
 */
const hook: Hook<'command_not_found'> = async function ({config, id, argv}) {
  const words = id.split(':')
  if (words[0] === 'help') {
    const {loadHelpClass} = await import('@oclif/core/help')
    const Help = await loadHelpClass(config)
    await new Help(config, config.pjson.oclif.helpOptions).showHelp([...words.slice(1), ...(argv ?? [])])
    return
  }

  // `process 2025-09-28`: oclif joins words to a command that takes no argument into one id.
  // The command is run with the rest, so its own parser says what is wrong (and BaseCommand hints).
  for (let length = words.length - 1; length > 0; length--) {
    const command = words.slice(0, length).join(':')
    if (config.findCommand(command)) return config.runCommand(command, [...words.slice(length), ...(argv ?? [])])
  }

  const typed = words.join(' ')
  const known = config.commandIDs.map((name) => name.replaceAll(':', ' '))
  const nearest = closestName(typed, known)
  const suggestion = nearest ? `did you mean \`${config.bin} ${nearest}\`? ` : ''
  process.stderr.write(`Error: ${config.bin} has no command ${oneLine(JSON.stringify(typed), 100)} — ${suggestion}\`${config.bin} --help\` lists them\n`)
  process.exitCode = EXIT.usage
}

export default hook
