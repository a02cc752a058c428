// API keys for tests that run the API with AUTH_MODE=apikey: keys made straight in the test file's database,
// the Authorization header, problem assertions, and direct reads of the tables a refused request must not touch.
import pg from 'pg';
import * as assert from 'uvu/assert';
import type { Scope } from '../../services/core/src/auth/api-key.ts';
import type { HttpResult, TestWorld } from './system.ts';

export type StartedApi = Awaited<ReturnType<TestWorld['startApi']>>;

/** A key the test holds the secret of. */
export type TestKey = Readonly<{ id: string; secret: string; headers: Record<string, string> }>;

export const TASKS = '/api/v1/tasks';
export const KEYS = '/api/v1/keys';
export const PROBLEM_TYPES = 'https://conveyor.dev/problems/';

/** The header that presents `secret`. */
export const bearer = (secret: string): Record<string, string> => ({ authorization: `Bearer ${secret}` });

/** Creates a key through the API's own repository (as `npm run keys -- create` would). */
export async function makeKey(api: StartedApi, tenant: string, scopes: Scope[], name = ''): Promise<TestKey> {
  const { key, secret } = await api.database.apiKeys().createKey({ tenant, scopes, name });
  return Object.freeze({ id: key.id, secret, headers: bearer(secret) });
}

/** Runs one statement on the test file's database with a connection of its own. */
export async function sqlRows<T = Record<string, unknown>>(world: TestWorld, text: string, values: unknown[] = []): Promise<T[]> {
  const client = new pg.Client({ connectionString: world.env['DATABASE_URL'] });
  await client.connect();
  try {
    return (await client.query(text, values)).rows as T[];
  } finally {
    await client.end();
  }
}

/** Every row of `api_keys`, each as its JSON text, oldest first. */
export async function apiKeyRows(world: TestWorld): Promise<string[]> {
  const rows = await sqlRows<{ row: string }>(world, 'SELECT row_to_json(k)::text AS row FROM api_keys k ORDER BY id');
  return rows.map((r) => r.row);
}

/** Asserts an RFC 9457 problem of this status and type (the last segment of its `type` URI). */
export function assertProblem(res: HttpResult, status: number, type: string, detail: RegExp = /./): void {
  const context = `${res.status} ${res.text}`;
  assert.is(res.status, status, context);
  assert.match(res.headers.get('content-type') ?? '', /^application\/problem\+json/, context);
  assert.is(res.body?.type, PROBLEM_TYPES + type, context);
  assert.is(res.body?.status, status, context);
  assert.type(res.body?.title, 'string');
  assert.type(res.body?.instance, 'string');
  assert.match(res.body?.detail ?? '', detail, context);
}
