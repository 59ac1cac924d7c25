import type {Command, Interfaces} from '@oclif/core'
import {CommandHelp, Help} from '@oclif/core/help'

/**
 * oclif passes every string of a help page through ejs.render (each flag's name and description,
 * every section), and EJS compiles each one into a function, although only the examples hold a
 * tag. A string without one renders as itself, so it skips EJS: a third of the time `--help`
 * spends rendering.
 */
function renderTagsOnly(render: (input: string) => string): (input: string) => string {
  return (input) => (input.includes('<%') ? render(input) : input)
}

/** A command's page: the summary heads it, so DESCRIPTION holds the description alone (oclif repeats the summary there). */
class DescriptionOnlyHelp extends CommandHelp {
  protected override description(): string | undefined {
    return this.command.description ? this.wrap(this.command.description) : undefined
  }
}

/**
 * Root help that lists every command (db ones included, not only the topic) with its summary and
 * first example, so `audit-logger --help` alone tells an operator what the tool can do.
 */
export default class AuditLoggerHelp extends Help {
  constructor(config: Interfaces.Config, opts?: Partial<Interfaces.HelpOptions>) {
    super(config, opts)
    this.render = renderTagsOnly(this.render)
  }

  protected override getCommandHelpClass(command: Command.Loadable): CommandHelp {
    const help = new DescriptionOnlyHelp(command, this.config, this.opts)
    help.render = renderTagsOnly(help.render)
    return help
  }

  protected override async showRootHelp(): Promise<void> {
    this.log(this.formatRoot())
    this.log('')
    const commands = this.sortedCommands.filter((c) => !c.hidden)
    this.log(this.formatCommands(commands))
    this.log('')
    const examples = commands.flatMap((c) => firstExample(c, this.config.bin))
    this.log(this.section('EXAMPLES', examples.join('\n')))
    this.log('')
    this.log(this.section('EXIT CODES', '0  done, or skipped (already done / held by a live run / left for later by the rate budget)\n1  a day FAILED or ERROR, a claim was lost, or a range was interrupted\n2  usage or configuration error: nothing was claimed'))
    this.log('')
    this.log(`Run ${this.config.bin} COMMAND --help for a command's flags and more examples.`)
  }
}

function firstExample(command: Command.Loadable, bin: string): string[] {
  const example = command.examples?.[0]
  if (example === undefined) return []
  const text = typeof example === 'string' ? example : example.command
  return [`$ ${text.replaceAll('<%= config.bin %>', bin).replaceAll('<%= command.id %>', command.id.replaceAll(':', ' '))}`]
}
