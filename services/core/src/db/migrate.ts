import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import pg from 'pg';
import type { Logger } from '../log.ts';
import { translated } from './errors.ts';

const MIGRATIONS_DIR = join(import.meta.dirname, 'migrations');
const FILE_NAME = /^(\d{4})_([a-z0-9_]+)\.sql$/;

export type Migration = { version: number; name: string; sql: string };

export async function readMigrations(dir = MIGRATIONS_DIR): Promise<Migration[]> {
  const files = (await readdir(dir)).filter((file) => FILE_NAME.test(file)).sort();
  return Promise.all(
    files.map(async (file) => {
      const [, version, name] = FILE_NAME.exec(file) as RegExpExecArray;
      return { version: Number(version), name: name as string, sql: await readFile(join(dir, file), 'utf8') };
    }),
  );
}

/**
 * Applies every migration not yet recorded, in version order, all in one transaction. An advisory lock makes
 * concurrent starts (several API and worker processes) apply each migration exactly once.
 *
 * Migration files hold several statements, which slonik refuses by design, so this one routine talks to
 * PostgreSQL through `pg`'s simple query protocol.
 * @returns the versions applied by this call.
 * @throws {DatabaseUnavailable} when PostgreSQL cannot be reached.
 */
export async function migrate(url: string, log: Logger): Promise<number[]> {
  const migrations = await readMigrations();
  const client = new pg.Client({ connectionString: url, application_name: 'conveyor-migrate', connectionTimeoutMillis: 5_000 });
  await translated(() => client.connect());
  try {
    await client.query('BEGIN');
    await client.query(`SELECT pg_advisory_xact_lock(hashtext('conveyor.migrations'))`);
    await client.query(`
      CREATE TABLE IF NOT EXISTS conveyor_migrations (
        version integer PRIMARY KEY,
        name text NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now()
      )`);
    const { rows } = await client.query<{ version: number }>('SELECT version FROM conveyor_migrations');
    const applied = new Set(rows.map((row) => row.version));
    const done: number[] = [];
    for (const migration of migrations.filter((m) => !applied.has(m.version))) {
      await client.query(migration.sql);
      await client.query('INSERT INTO conveyor_migrations (version, name) VALUES ($1, $2)', [migration.version, migration.name]);
      log.info({ version: migration.version, name: migration.name }, 'migration applied');
      done.push(migration.version);
    }
    await client.query('COMMIT');
    return done;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  } finally {
    await client.end().catch(() => undefined);
  }
}
