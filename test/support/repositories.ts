// What the repository tests share: a fresh, migrated database per suite, and tasks in the states a test starts from.
import pg from 'pg';
import * as assert from 'uvu/assert';
import { loadConfig } from '../../services/core/src/config.ts';
import { Database } from '../../services/core/src/db/database.ts';
import type { TaskUpkeep } from '../../services/core/src/db/task-upkeep.ts';
import type { AttemptsRepository, ClaimedTask } from '../../services/core/src/db/attempts-repository.ts';
import type { NewTask, TasksRepository } from '../../services/core/src/db/tasks-repository.ts';
import { newId } from '../../services/core/src/ids.ts';
import { type Backoff, DEFAULT_BACKOFF } from '../../services/core/src/tasks/backoff.ts';
import type { Task } from '../../services/core/src/tasks/model.ts';
import { dropDatabase, freshDatabaseUrl } from './isolation.ts';
import { testLog } from './system.ts';

export type Ctx = { urls: string[]; database: Database; repo: TasksRepository; attempts: AttemptsRepository; upkeep: TaskUpkeep; db: pg.Client };
export type Repos = Pick<Ctx, 'repo' | 'attempts'>;

/** Each suite gets its own database: the reaper and the sweeps act on every row, not only on a test's own. */
export async function openDatabase(ctx: Ctx): Promise<void> {
  const url = await freshDatabaseUrl();
  ctx.urls = [url];
  ctx.database = new Database(loadConfig({ DATABASE_URL: url, LOG_LEVEL: 'silent' }), 'conveyor-test', testLog);
  await ctx.database.start();
  ctx.repo = ctx.database.tasks();
  ctx.attempts = ctx.database.attempts();
  ctx.upkeep = ctx.database.upkeep();
  // For what the repository does not offer: timestamps moved into the past, counts across rows.
  ctx.db = new pg.Client({ connectionString: url });
  await ctx.db.connect();
}

export async function closeDatabase(ctx: Ctx): Promise<void> {
  await ctx.db?.end();
  await ctx.database?.stop();
  for (const url of ctx.urls ?? []) await dropDatabase(url);
}

export const WORKER = 'worker-a';
// Long enough that no lease of this file expires unless a test expires it on purpose.
export const LEASE_MS = 600_000;
export const FIXED: Backoff = { type: 'fixed', delayMs: 1_000, maxDelayMs: 1_000, jitter: false };
export const MISSING_ID = '00000000-0000-7000-8000-000000000000';

export async function insert(repo: TasksRepository, overrides: Partial<NewTask> = {}): Promise<Task> {
  const { task, created } = await repo.insertTask({
    id: newId(),
    tenant: 'default',
    type: 'echo',
    payload: { n: 1 },
    priority: 5,
    maxAttempts: 3,
    backoff: DEFAULT_BACKOFF,
    ...overrides,
  });
  assert.ok(created, 'a task without an idempotency key is always created');
  return task;
}

export async function claimed({ repo, attempts }: Repos, overrides: Partial<NewTask> = {}): Promise<ClaimedTask> {
  const task = await insert(repo, overrides);
  const claim = await attempts.claimTask(task.id, WORKER, LEASE_MS);
  assert.ok(claim, 'a fresh task can be claimed');
  return claim;
}

export async function finished({ repo, attempts }: Repos, status: 'completed' | 'failed' | 'cancelled', overrides: Partial<NewTask> = {}): Promise<Task> {
  if (status === 'cancelled') return (await repo.cancelTask((await insert(repo, overrides)).id)).task;
  const task = await claimed({ repo, attempts }, { maxAttempts: 1, ...overrides });
  if (status === 'completed') {
    assert.ok(await attempts.completeTask(task.id, task.leaseToken, 'ok'));
    return repo.getTask(task.id);
  }
  const done = await attempts.failAttempt(task.id, task.leaseToken, { message: 'broken', attempt: 1 }, null);
  assert.is(done?.status, status);
  return done as Task;
}

/** Moves a timestamp column of these rows `ms` into the past: the clock the reaper, relay and sweeps read is PostgreSQL's. */
export async function backdate(db: pg.Client, ids: readonly string[], column: 'lease_expires_at' | 'finished_at' | 'updated_at' | 'run_at', ms: number): Promise<void> {
  await db.query(`UPDATE tasks SET ${column} = now() - make_interval(secs => $2::float8 / 1000) WHERE id = ANY($1::uuid[])`, [ids, ms]);
}

export const expireLeases = (db: pg.Client, ids: readonly string[]) => backdate(db, ids, 'lease_expires_at', 1_000);

export async function rejected<E extends Error>(call: Promise<unknown>, type: new (...args: never[]) => E): Promise<E> {
  try {
    await call;
  } catch (error) {
    assert.instance(error, type);
    return error as E;
  }
  assert.unreachable(`expected ${type.name}`);
  throw new Error('unreachable');
}

export const ISO_MS = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
export const ms = (iso: string | null | undefined) => Date.parse(iso ?? '');

/** Resolves once a statement of the repository's pool waits for a row lock. */
export async function lockWaitedFor(db: pg.Client): Promise<void> {
  for (;;) {
    const { rows } = await db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()`,
    );
    if ((rows[0]?.n ?? 0) > 0) return;
  }
}
