/** How many migrations the tool has: what a database never migrated reports as pending. */
import {readdirSync} from 'node:fs'
import {fileURLToPath} from 'node:url'

export const MIGRATION_COUNT = readdirSync(fileURLToPath(new URL('../../src/migrations', import.meta.url))).filter((file) => file.endsWith('.ts')).length
