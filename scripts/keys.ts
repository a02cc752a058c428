// `npm run keys -- <command>`: creates, lists and revokes API keys in the database named by DATABASE_URL.
// A new key is printed once, alone on stdout (so `KEY=$(npm run -s keys -- create …)` works); only its hash is kept.
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { ScopeSchema, TenantSchema } from '../services/core/src/auth/api-key.ts';
import { loadConfig } from '../services/core/src/config.ts';
import { Database } from '../services/core/src/db/database.ts';
import { createLogger } from '../services/core/src/log.ts';

const USAGE = `usage:
  npm run keys -- create --tenant <tenant> --scopes <scope,scope…> [--name <what it is for>]
  npm run keys -- list [--tenant <tenant>]
  npm run keys -- revoke <key id>
scopes: tasks:read, tasks:write, admin`;

class UsageError extends Error {}

function valid<T extends z.ZodType>(schema: T, value: unknown, what: string): z.output<T> {
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw new UsageError(`${what}: ${parsed.error.issues.map((i) => i.message).join('; ')}`);
  return parsed.data;
}

async function run(database: Database, argv: string[]): Promise<void> {
  const { positionals, values } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { tenant: { type: 'string' }, scopes: { type: 'string' }, name: { type: 'string' } },
  });
  const [command, ...rest] = positionals;
  const keys = database.apiKeys();
  if (command === 'create' && rest.length === 0) {
    const tenant = valid(TenantSchema, values.tenant, '--tenant');
    const scopes = valid(z.array(ScopeSchema).min(1), values.scopes?.split(',').map((s) => s.trim()), '--scopes');
    const { key, secret } = await keys.createKey({ tenant, scopes: [...new Set(scopes)], name: values.name });
    console.error(`created key ${key.id} for tenant ${key.tenant} with scopes ${key.scopes.join(', ')}; it is shown only now:`);
    console.log(secret);
  } else if (command === 'list' && rest.length === 0) {
    const tenant = values.tenant === undefined ? undefined : valid(TenantSchema, values.tenant, '--tenant');
    for (const key of await keys.listKeys(tenant)) {
      const state = key.revokedAt ? `revoked ${key.revokedAt}` : 'active';
      console.log([key.id, key.tenant, key.scopes.join(','), key.hint, key.name || '-', `created ${key.createdAt}`, state].join('\t'));
    }
  } else if (command === 'revoke' && rest.length === 1) {
    const key = await keys.revokeKey(valid(z.uuid(), rest[0], 'key id'));
    console.error(`revoked key ${key.id} of tenant ${key.tenant}`);
  } else {
    throw new UsageError(command === undefined ? 'a command is required' : `unknown command or arguments: ${positionals.join(' ')}`);
  }
}

const database = new Database(loadConfig(), 'conveyor-keys', createLogger({ service: 'keys', level: 'silent' }));
try {
  await database.start();
  await run(database, process.argv.slice(2));
} catch (error) {
  if (error instanceof UsageError) console.error(`${error.message}\n${USAGE}`);
  else console.error((error as { status?: number }).status === 404 ? (error as Error).message : error);
  process.exitCode = error instanceof UsageError ? 2 : 1;
} finally {
  await database.stop();
}
