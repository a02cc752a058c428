import {
  createPool,
  createTypeParserPreset,
  type DatabasePool,
  type Interceptor,
  type QueryResultRow,
  SchemaValidationError,
  sql,
} from 'slonik';
import { z } from 'zod';
import type { Logger } from '../log.ts';
import { translated } from './errors.ts';

export type { DatabasePool };

/** Validates every `sql.type(schema)` result against its schema (slonik leaves this to an interceptor). */
function resultParser(): Interceptor {
  return {
    name: 'conveyor-result-parser',
    transformRowAsync: async (context, query, row) => {
      if (!context.resultParser) return row;
      const outcome = await context.resultParser['~standard'].validate(row);
      if (outcome.issues) throw new SchemaValidationError(query, row, outcome.issues);
      return outcome.value as QueryResultRow;
    },
  };
}

/** `2026-11-28 00:07:03.123456+00` as PostgreSQL writes it in UTC: rewritten by hand, the hot path's commonest value. */
const UTC_TIMESTAMP = /^(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d)(?:\.(\d{1,6}))?\+00$/;

function isoTimestamp(value: string): string {
  const utc = UTC_TIMESTAMP.exec(value);
  if (utc) return `${utc[1]}T${utc[2]}.${(utc[3] ?? '').padEnd(3, '0').slice(0, 3)}Z`;
  // Another session time zone: made ISO first, since Date reads years below 100 in PostgreSQL's own form as 19xx.
  return new Date(value.replace(' ', 'T').replace(/([+-]\d\d)$/, '$1:00')).toISOString();
}

// Timestamps leave the database as ISO 8601 UTC strings, the form the API speaks, instead of slonik's epoch numbers.
const typeParsers = [
  ...createTypeParserPreset().filter((parser) => parser.name !== 'timestamptz'),
  { name: 'timestamptz', parse: isoTimestamp },
];

export type PoolOptions = { maxPoolSize: number; applicationName: string };

/**
 * Opens a pool on `url`, creating the database first when it does not exist.
 * @throws {DatabaseUnavailable} when PostgreSQL cannot be reached.
 */
export async function openPool(url: string, options: PoolOptions, log: Logger): Promise<DatabasePool> {
  await ensureDatabase(url, log);
  return translated(() =>
    createPool(withSessionSettings(url, options.applicationName), {
      maxPoolSize: options.maxPoolSize,
      interceptors: [resultParser()],
      typeParsers,
      captureStackTrace: false,
      connectionTimeout: 5_000,
      statementTimeout: 60_000,
      // Slonik's default runs DISCARD ALL after every query: a second round trip each time, and no reuse of
      // prepared statements. Nothing here changes session state outside a transaction, so there is nothing to reset.
      resetConnection: async () => undefined,
    }),
  );
}

/**
 * Names the connections, and plans the hot paths' prepared statements for each call's own arguments: a plan
 * cached for all calls is made once, from the table as it was then, and is not made again while the table
 * grows (a generic plan made on a new, small table scans it whole for every claim once it is large).
 */
function withSessionSettings(url: string, name: string): string {
  const parsed = new URL(url);
  if (!parsed.searchParams.has('application_name')) parsed.searchParams.set('application_name', name);
  const options = parsed.searchParams.get('options');
  parsed.searchParams.set('options', `${options ? `${options} ` : ''}-c plan_cache_mode=force_custom_plan`);
  return parsed.toString();
}

/** Creates the database named in `url` if it is missing; concurrent callers are fine. */
async function ensureDatabase(url: string, log: Logger): Promise<void> {
  const target = new URL(url);
  const name = decodeURIComponent(target.pathname.replace(/^\//, ''));
  if (!name) return;
  const admin = new URL(url);
  admin.pathname = '/postgres';
  const pool = await translated(() => createPool(admin.toString(), { maxPoolSize: 1, connectionTimeout: 5_000 }));
  try {
    const exists = () =>
      pool.exists(sql.type(z.object({ exists: z.boolean() }))`SELECT 1 FROM pg_database WHERE datname = ${name}`);
    if (await translated(exists)) return;
    try {
      await pool.query(sql.unsafe`CREATE DATABASE ${sql.identifier([name])}`);
      log.info({ database: name }, 'database created');
    } catch (error) {
      // Another process created it between our check and our CREATE.
      if (!(await translated(exists))) throw error;
    }
  } finally {
    await pool.end();
  }
}

/**
 * One round-trip to PostgreSQL, for readiness checks.
 * @throws {DatabaseUnavailable}
 */
export async function pingDatabase(pool: DatabasePool): Promise<void> {
  await translated(() => pool.query(sql.unsafe`SELECT 1`));
}
