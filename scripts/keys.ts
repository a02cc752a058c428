// `npm run keys -- <command>`: creates, lists and revokes API keys in the database named by DATABASE_URL.
// A new key is printed once, alone on stdout (so `KEY=$(npm run -s keys -- create …)` works); only its hash is kept.
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { type Scope, ScopeSchema, TenantSchema } from '../services/core/src/auth/api-key.ts';
import { loadConfig } from '../services/core/src/config.ts';
import type { ApiKeysRepository } from '../services/core/src/db/api-keys-repository.ts';
import { Database } from '../services/core/src/db/database.ts';
import { createLogger } from '../services/core/src/log.ts';

const USAGE = `usage:
  npm run keys -- create --tenant <tenant> --scopes <scope,scope…> [--name <what it is for>]
  npm run keys -- list [--tenant <tenant>]
  npm run keys -- revoke <key id>
scopes: tasks:read, tasks:write, admin`;

class UsageError extends Error {}

type Command =
  | { name: 'create'; tenant: string; scopes: Scope[]; label: string | undefined }
  | { name: 'list'; tenant: string | undefined }
  | { name: 'revoke'; id: string };

function valid<T extends z.ZodType>(schema: T, value: unknown, what: string): z.output<T> {
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw new UsageError(`${what}: ${parsed.error.issues.map((i) => i.message).join('; ')}`);
  return parsed.data;
}

/** Reads the command line, before anything touches the database. @throws {UsageError} */
function command(argv: string[]): Command {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: { tenant: { type: 'string' }, scopes: { type: 'string' }, name: { type: 'string' } },
    });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const { positionals, values } = parsed;
  const [name, ...rest] = positionals;
  if (name === 'create' && rest.length === 0) {
    const scopes = valid(z.array(ScopeSchema).min(1), values.scopes?.split(',').map((s) => s.trim()), '--scopes');
    return { name, tenant: valid(TenantSchema, values.tenant, '--tenant'), scopes: [...new Set(scopes)], label: values.name };
  }
  if (name === 'list' && rest.length === 0) {
    return { name, tenant: values.tenant === undefined ? undefined : valid(TenantSchema, values.tenant, '--tenant') };
  }
  if (name === 'revoke' && rest.length === 1) return { name, id: valid(z.uuid(), rest[0], 'key id') };
  throw new UsageError(name === undefined ? 'a command is required' : `unknown command or arguments: ${positionals.join(' ')}`);
}

async function run(keys: ApiKeysRepository, cmd: Command): Promise<void> {
  if (cmd.name === 'create') {
    const { key, secret } = await keys.createKey({ tenant: cmd.tenant, scopes: cmd.scopes, name: cmd.label });
    console.error(`created key ${key.id} for tenant ${key.tenant} with scopes ${key.scopes.join(', ')}; it is shown only now:`);
    console.log(secret);
  } else if (cmd.name === 'list') {
    for (const key of await keys.listKeys(cmd.tenant)) {
      const state = key.revokedAt ? `revoked ${key.revokedAt}` : 'active';
      console.log([key.id, key.tenant, key.scopes.join(','), key.hint, key.name || '-', `created ${key.createdAt}`, state].join('\t'));
    }
  } else {
    const key = await keys.revokeKey(cmd.id);
    console.error(`revoked key ${key.id} of tenant ${key.tenant}`);
  }
}

let cmd: Command;
try {
  cmd = command(process.argv.slice(2));
} catch (error) {
  console.error(`${(error as Error).message}\n${USAGE}`);
  process.exit(2);
}
const database = new Database(loadConfig(), 'conveyor-keys', createLogger({ service: 'keys', level: 'silent' }));
try {
  await database.start();
  await run(database.apiKeys(), cmd);
} catch (error) {
  console.error((error as { status?: number }).status === 404 ? (error as Error).message : error);
  process.exitCode = 1;
} finally {
  await database.stop();
}
