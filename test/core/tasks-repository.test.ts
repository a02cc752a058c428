import pg from 'pg';
import { sql } from 'slonik';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { z } from 'zod';
import { loadConfig } from '../../services/core/src/config.ts';
import { Database } from '../../services/core/src/db/database.ts';
import { migrate, readMigrations } from '../../services/core/src/db/migrate.ts';
import type { TaskUpkeep } from '../../services/core/src/db/task-upkeep.ts';
import type { AttemptsRepository, ClaimedTask } from '../../services/core/src/db/attempts-repository.ts';
import type { NewTask, TasksRepository } from '../../services/core/src/db/tasks-repository.ts';
import { TaskConflict, TaskNotFound } from '../../services/core/src/errors.ts';
import { newId } from '../../services/core/src/ids.ts';
import { type Backoff, DEFAULT_BACKOFF } from '../../services/core/src/tasks/backoff.ts';
import type { Task } from '../../services/core/src/tasks/model.ts';
import { TASK_STATUSES, TaskStatus } from '../../services/core/src/tasks/state.ts';
import { dropDatabase, freshDatabaseUrl, uniqueName } from '../support/isolation.ts';
import { testLog } from '../support/system.ts';
import { within } from '../support/wait.ts';

type Ctx = { urls: string[]; database: Database; repo: TasksRepository; attempts: AttemptsRepository; upkeep: TaskUpkeep; db: pg.Client };
type Repos = Pick<Ctx, 'repo' | 'attempts'>;
const test = suite<Ctx>('core: tasks repository');

test.before(openDatabase);
test.after(closeDatabase);

/** Each suite gets its own database: the reaper and the sweeps act on every row, not only on a test's own. */
async function openDatabase(ctx: Ctx): Promise<void> {
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

async function closeDatabase(ctx: Ctx): Promise<void> {
  await ctx.db?.end();
  await ctx.database?.stop();
  for (const url of ctx.urls ?? []) await dropDatabase(url);
}

const WORKER = 'worker-a';
// Long enough that no lease of this file expires unless a test expires it on purpose.
const LEASE_MS = 600_000;
const FIXED: Backoff = { type: 'fixed', delayMs: 1_000, maxDelayMs: 1_000, jitter: false };
const MISSING_ID = '00000000-0000-7000-8000-000000000000';

async function insert(repo: TasksRepository, overrides: Partial<NewTask> = {}): Promise<Task> {
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

async function claimed({ repo, attempts }: Repos, overrides: Partial<NewTask> = {}): Promise<ClaimedTask> {
  const task = await insert(repo, overrides);
  const claim = await attempts.claimTask(task.id, WORKER, LEASE_MS);
  assert.ok(claim, 'a fresh task can be claimed');
  return claim;
}

async function finished({ repo, attempts }: Repos, status: 'completed' | 'failed' | 'cancelled', overrides: Partial<NewTask> = {}): Promise<Task> {
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
async function backdate(db: pg.Client, ids: readonly string[], column: 'lease_expires_at' | 'finished_at' | 'updated_at' | 'run_at', ms: number) {
  await db.query(`UPDATE tasks SET ${column} = now() - make_interval(secs => $2::float8 / 1000) WHERE id = ANY($1::uuid[])`, [ids, ms]);
}

const expireLeases = (db: pg.Client, ids: readonly string[]) => backdate(db, ids, 'lease_expires_at', 1_000);

async function rejected<E extends Error>(call: Promise<unknown>, type: new (...args: never[]) => E): Promise<E> {
  try {
    await call;
  } catch (error) {
    assert.instance(error, type);
    return error as E;
  }
  assert.unreachable(`expected ${type.name}`);
  throw new Error('unreachable');
}

const ISO_MS = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
const ms = (iso: string | null | undefined) => Date.parse(iso ?? '');

test('the task_status enum in PostgreSQL is TASK_STATUSES, in order', async ({ database }) => {
  const labels = await database.pool.anyFirst(sql.type(z.object({ enumlabel: z.string() }))`
    SELECT e.enumlabel FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid
    WHERE t.typname = 'task_status' ORDER BY e.enumsortorder`);
  assert.equal([...labels], [...TASK_STATUSES]);
});

test('insertTask stores a pending task with every default; findTask and getTask read it back', async ({ repo, attempts }) => {
  const id = newId();
  const payload = { text: 'héllo ✓', list: [1, 2.5, null, true], nested: { deep: { value: 'x' } } };
  const { task, created } = await repo.insertTask({ id, tenant: 'default', type: 'echo', payload, priority: 7, maxAttempts: 2, backoff: DEFAULT_BACKOFF });
  assert.ok(created);
  assert.equal(
    { ...task, createdAt: undefined, updatedAt: undefined, runAt: undefined },
    {
      id,
      tenant: 'default',
      type: 'echo',
      payload,
      priority: 7,
      status: TaskStatus.pending,
      attempts: 0,
      maxAttempts: 2,
      result: null,
      error: null,
      errors: [],
      backoff: { type: 'exponential', delayMs: 1_000, maxDelayMs: 300_000, jitter: true },
      timeoutMs: null,
      idempotencyKey: null,
      retentionMs: null,
      runAt: undefined,
      cancelRequested: false,
      workerId: null,
      leaseExpiresAt: null,
      createdAt: undefined,
      updatedAt: undefined,
      startedAt: null,
      finishedAt: null,
    },
  );
  assert.match(task.createdAt, ISO_MS);
  assert.is(task.updatedAt, task.createdAt);
  assert.is(task.runAt, task.createdAt, 'due at once');
  assert.equal(await repo.findTask(id), task);
  assert.equal(await repo.getTask(id), task);
});

test('insertTask keeps backoff, runAt, timeoutMs, idempotencyKey and retentionMs', async ({ repo }) => {
  const backoff: Backoff = { type: 'fixed', delayMs: 250, maxDelayMs: 250, jitter: false };
  // Past 2^31 ms, which a 32-bit integer column would not hold.
  const retentionMs = 30 * 86_400_000;
  const key = uniqueName('settings');
  const task = await insert(repo, { backoff, runAt: '2031-05-06T07:08:09.123+02:00', timeoutMs: 1_500, idempotencyKey: key, retentionMs });
  assert.equal(task.backoff, backoff);
  assert.is(task.runAt, '2031-05-06T05:08:09.123Z');
  assert.is(task.timeoutMs, 1_500);
  assert.is(task.idempotencyKey, key);
  assert.is(task.retentionMs, retentionMs);
  assert.is((await insert(repo, { retentionMs: 0 })).retentionMs, 0, '0 (keep forever) is stored, not taken for unset');
});

test('findTask gives null and getTask throws TaskNotFound for a missing task', async ({ repo }) => {
  assert.is(await repo.findTask(MISSING_ID), null);
  const error = await rejected(repo.getTask(MISSING_ID), TaskNotFound);
  assert.is(error.status, 404);
  assert.match(error.message, MISSING_ID);
});

test('insertTask with a used idempotency key stores nothing and returns the first task', async ({ repo, db }) => {
  const key = uniqueName('key');
  const first = await repo.insertTask({ id: newId(), tenant: 'default', type: 'echo', payload: { n: 1 }, priority: 5, maxAttempts: 1, backoff: DEFAULT_BACKOFF, idempotencyKey: key });
  assert.ok(first.created);
  const again = await repo.insertTask({ id: newId(), tenant: 'default', type: 'sleep', payload: { ms: 5 }, priority: 9, maxAttempts: 4, backoff: FIXED, idempotencyKey: key });
  assert.not.ok(again.created);
  assert.equal(again.task, first.task, 'the first task, as stored, whatever the second submit asked for');
  const other = await repo.insertTask({ id: newId(), tenant: 'default', type: 'echo', payload: {}, priority: 5, maxAttempts: 1, backoff: DEFAULT_BACKOFF, idempotencyKey: `${key}-other` });
  assert.ok(other.created, 'another key is another task');
  const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM tasks WHERE idempotency_key = $1', [key]);
  assert.is(rows[0]?.n, 1);
});

test("a tenant's calls never see or change another tenant's task; system calls (no tenant) see every task", async ({ repo }) => {
  const theirs = await insert(repo, { tenant: 'globex', type: 'sleep', payload: { ms: 1 }, idempotencyKey: uniqueName('shared') });
  const mine = await insert(repo, { tenant: 'acme', idempotencyKey: theirs.idempotencyKey ?? undefined });
  assert.is.not(mine.id, theirs.id, 'idempotency keys are per tenant');
  assert.is(await repo.findTask(theirs.id, 'acme'), null);
  for (const call of [
    () => repo.getTask(theirs.id, 'acme'),
    () => repo.taskEvents(theirs.id, 'acme'),
    () => repo.cancelTask(theirs.id, 'acme'),
    () => repo.deleteTask(theirs.id, 'acme'),
  ]) {
    await rejected(call(), TaskNotFound);
  }
  assert.equal(await repo.getTask(theirs.id), theirs, 'untouched, and visible to the system');
  assert.equal((await repo.listTasks({ tenant: 'acme', limit: 100 })).map((t) => t.id), [mine.id]);
  assert.equal((await repo.listTasks({ tenant: 'globex', limit: 100 })).map((t) => t.id), [theirs.id]);
  assert.is((await repo.getTask(mine.id, 'acme')).tenant, 'acme');
  await repo.cancelTask(theirs.id, 'globex');
  await rejected(repo.rerunTask(theirs.id, 'acme'), TaskNotFound);
  assert.is((await repo.getTask(theirs.id)).status, TaskStatus.cancelled, 'the other tenant could not rerun it');
});

test('concurrent inserts with one idempotency key store one row and all return it', async ({ repo, db }) => {
  for (let round = 0; round < 5; round++) {
    const key = uniqueName(`race${round}`);
    const results = await Promise.all(
      Array.from({ length: 4 }, (_, i) =>
        repo.insertTask({ id: newId(), tenant: 'default', type: 'echo', payload: { i }, priority: 5, maxAttempts: 1, backoff: DEFAULT_BACKOFF, idempotencyKey: key }),
      ),
    );
    assert.is(results.filter((r) => r.created).length, 1, `round ${round}: one insert created the task`);
    assert.is(new Set(results.map((r) => r.task.id)).size, 1, `round ${round}: every caller got the same task`);
    const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM tasks WHERE idempotency_key = $1', [key]);
    assert.is(rows[0]?.n, 1, `round ${round}: one row`);
  }
});

test('listTasks is newest first and filters by type and status', async ({ repo, attempts }) => {
  const type = uniqueName('list');
  const other = uniqueName('list');
  const tasks: Task[] = [];
  for (let i = 0; i < 6; i++) tasks.push(await insert(repo, { type, payload: { i } }));
  await insert(repo, { type: other });
  const newestFirst = tasks.map((t) => t.id).reverse();

  const byType = await repo.listTasks({ tenant: 'default', type, limit: 100 });
  assert.equal(byType.map((t) => t.id), newestFirst);

  const running = [tasks[1], tasks[4]] as Task[];
  for (const task of running) assert.ok(await attempts.claimTask(task.id, WORKER, LEASE_MS));
  const byBoth = await repo.listTasks({ tenant: 'default', type, status: TaskStatus.in_progress, limit: 100 });
  assert.equal(byBoth.map((t) => t.id), [running[1]?.id, running[0]?.id]);

  // Other tests share this database, so a status-only filter is checked for what it must and must not return.
  const byStatus = await repo.listTasks({ tenant: 'default', status: TaskStatus.in_progress, limit: 10_000 });
  assert.ok(byStatus.every((t) => t.status === TaskStatus.in_progress));
  for (const task of running) assert.ok(byStatus.some((t) => t.id === task.id));
  assert.not.ok(byStatus.some((t) => t.id === tasks[0]?.id));

  const pendingOfType = await repo.listTasks({ tenant: 'default', type, status: TaskStatus.pending, limit: 100 });
  assert.equal(pendingOfType.length, 4);

  assert.is((await repo.listTasks({ tenant: 'default', type, limit: 2 })).length, 2);
  const all = await repo.listTasks({ tenant: 'default', limit: 10_000 });
  assert.equal(all.map((t) => t.id), [...all.map((t) => t.id)].sort().reverse(), 'unfiltered list is newest first too');
});

test('listTasks pages with beforeId without duplicates or gaps', async ({ repo }) => {
  const type = uniqueName('page');
  const ids: string[] = [];
  for (let i = 0; i < 11; i++) ids.push((await insert(repo, { type })).id);
  const seen: string[] = [];
  const sizes: number[] = [];
  let beforeId: string | undefined;
  for (let page = 0; page < 10; page++) {
    const rows = await repo.listTasks({ tenant: 'default', type, beforeId, limit: 4 });
    sizes.push(rows.length);
    if (rows.length === 0) break;
    seen.push(...rows.map((t) => t.id));
    beforeId = rows.at(-1)?.id;
  }
  assert.equal(sizes, [4, 4, 3, 0]);
  assert.equal(seen, [...ids].reverse());
});

test('the pool plans every statement for its own arguments and the table as it is now', async ({ database }) => {
  // A prepared statement's cached generic plan is made once; one made while `tasks` was small scans it whole.
  const setting = await database.pool.oneFirst(sql.type(z.object({ mode: z.string() }))`SELECT current_setting('plan_cache_mode') AS mode`);
  assert.is(setting, 'force_custom_plan');
});

test('markQueued moves pending tasks only and answers with each stored task as it now stands', async ({ repo, attempts }) => {
  const pending = await insert(repo);
  const alreadyQueued = await insert(repo);
  assert.equal((await repo.markQueued([alreadyQueued])).map((m) => m.moved), [true]);
  const running = await claimed({ repo, attempts });
  const failed = await finished({ repo, attempts }, 'failed');

  const marked = await repo.markQueued([pending, alreadyQueued, running, failed, { id: MISSING_ID, attempts: 0 }]);
  assert.equal(
    marked.map((m) => [m.task.id, m.task.status, m.moved]),
    [
      [pending.id, TaskStatus.queued, true],
      [alreadyQueued.id, TaskStatus.queued, false],
      [running.id, TaskStatus.in_progress, false],
      [failed.id, TaskStatus.failed, false],
    ],
    'in input order; the missing task is left out',
  );
  for (const { task } of marked) assert.equal(await repo.getTask(task.id), task, 'each answer is the stored row');
  assert.equal(await repo.markQueued([]), []);
});

test('markQueued waits for a writer holding a task and answers with the task as that writer left it', async ({ repo, db }) => {
  const held = await insert(repo);
  const free = await insert(repo);
  await db.query('BEGIN');
  try {
    // A worker's claim (or a client's cancel) is changing the task as the confirm comes in.
    await db.query(`UPDATE tasks SET status = 'cancelled', finished_at = now() WHERE id = $1`, [held.id]);
    const marking = repo.markQueued([held, free]);
    await within(lockWaitedFor(db), 5_000, 'markQueued to wait for the held row');
    await db.query('COMMIT');
    const marked = await marking;
    assert.equal(marked.map((m) => [m.task.id, m.task.status, m.moved]), [
      [held.id, TaskStatus.cancelled, false],
      [free.id, TaskStatus.queued, true],
    ]);
  } finally {
    await db.query('ROLLBACK');
  }
});

async function createDatabase(url: string): Promise<void> {
  const admin = new URL(url);
  const name = admin.pathname.slice(1);
  admin.pathname = '/postgres';
  const client = new pg.Client({ connectionString: admin.toString() });
  await client.connect();
  try {
    await client.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`);
  } finally {
    await client.end();
  }
}

test('migrations run concurrently apply each version exactly once, and again apply nothing', async (ctx) => {
  const url = await freshDatabaseUrl();
  ctx.urls.push(url);
  await createDatabase(url);
  const files = await readMigrations();
  assert.ok(files.length >= 2, 'the base schema and the reliability migration');

  const runs = await Promise.all([migrate(url, testLog), migrate(url, testLog), migrate(url, testLog)]);
  assert.equal(runs.flat().sort((a, b) => a - b), files.map((m) => m.version), 'each version applied by exactly one run');
  assert.is(runs.filter((applied) => applied.length > 0).length, 1, 'one run applied them all, in one transaction');

  assert.equal(await migrate(url, testLog), [], 'a later run applies nothing');

  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<{ version: number; name: string }>('SELECT version, name FROM conveyor_migrations ORDER BY version');
    assert.equal(rows, files.map(({ version, name }) => ({ version, name })));
    const { rows: tables } = await client.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_tables WHERE tablename = 'tasks'`);
    assert.is(tables[0]?.n, 1);
  } finally {
    await client.end();
  }
});

test.run();

const claims = suite<Ctx>('core: tasks repository: claims and leases');
claims.before(openDatabase);
claims.after(closeDatabase);

claims('claimTask takes a pending or queued task for one attempt, under a lease held by the worker', async ({ repo, attempts }) => {
  const pending = await insert(repo);
  const claim = await attempts.claimTask(pending.id, WORKER, LEASE_MS);
  assert.ok(claim);
  assert.is(claim.status, TaskStatus.in_progress);
  assert.is(claim.attempts, 1);
  assert.is(claim.workerId, WORKER);
  assert.match(claim.leaseToken, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
  assert.ok(claim.startedAt);
  assert.is(claim.finishedAt, null);
  assert.is(ms(claim.leaseExpiresAt) - ms(claim.updatedAt), LEASE_MS, 'the lease runs leaseMs from the claim');
  const { leaseToken, ...stored } = claim;
  assert.equal(await repo.getTask(pending.id), stored, 'the token is the worker\'s alone: a read does not show it');

  const queued = await insert(repo);
  await repo.markQueued([queued]);
  const second = await attempts.claimTask(queued.id, 'worker-b', 5_000);
  assert.is(second?.status, TaskStatus.in_progress);
  assert.is(second?.attempts, 1);
  assert.is(second?.workerId, 'worker-b');
  assert.is(ms(second?.leaseExpiresAt) - ms(second?.updatedAt), 5_000);
});

claims('every claim gets a new lease token', async ({ repo, attempts }) => {
  const first = await claimed({ repo, attempts });
  assert.ok(await attempts.handBack(first.id, first.leaseToken));
  const second = await attempts.claimTask(first.id, WORKER, LEASE_MS);
  assert.ok(second);
  assert.is.not(second.leaseToken, first.leaseToken);
});

claims('concurrent inserts and claims share statements (group commit): far fewer write transactions than calls', async ({ repo, attempts, db }) => {
  // Every write transaction takes a transaction id, cluster-wide: their count is the number of statements sent.
  const xid = async () => Number((await db.query('SELECT txid_current()::int8 AS x')).rows[0].x);
  const before = await xid();
  const tasks = await Promise.all(Array.from({ length: 50 }, () => insert(repo)));
  const afterInserts = await xid();
  const claims = await Promise.all(tasks.map((task) => attempts.claimTask(task.id, WORKER, LEASE_MS)));
  const afterClaims = await xid();
  assert.ok(claims.every((claim) => claim !== null));
  // One statement per call would be 50 (plus one for the reading call); a little slack for other clients of the server.
  assert.ok(afterInserts - before - 1 < 25, `${afterInserts - before - 1} write transactions for 50 inserts`);
  assert.ok(afterClaims - afterInserts - 1 < 25, `${afterClaims - afterInserts - 1} write transactions for 50 claims`);
});

claims('many concurrent claims, each task asked for twice by one worker: one attempt per task, and the completions land on their own tasks', async ({ repo, attempts }) => {
  const tasks = await Promise.all(Array.from({ length: 30 }, () => insert(repo)));
  // Every task claimed twice by the same worker, as a redelivered message would be, and all at once.
  const requests = [...tasks, ...tasks].map((task) => attempts.claimTask(task.id, WORKER, LEASE_MS));
  const results = await Promise.all(requests);
  for (const [i, task] of tasks.entries()) {
    const pair = [results[i], results[i + tasks.length]];
    assert.is(pair.filter((r) => r !== null).length, 1, `task ${i}: one attempt started`);
    assert.is(pair.find((r) => r !== null)?.id, task.id, 'each answer is its own task');
  }
  const stored = await Promise.all(tasks.map((task) => repo.getTask(task.id)));
  assert.ok(stored.every((task) => task.attempts === 1 && task.status === TaskStatus.in_progress));
  // And the completions, grouped the same way, each land on their own task.
  const won = results.filter((r) => r !== null);
  assert.ok((await Promise.all(won.map((claim) => attempts.completeTask(claim.id, claim.leaseToken, { echo: claim.id })))).every(Boolean));
  const done = await Promise.all(won.map((claim) => repo.getTask(claim.id)));
  assert.equal(done.map((task) => task.result), won.map((claim) => ({ echo: claim.id })));
  assert.equal(await Promise.all(won.map((claim) => attempts.completeTask(claim.id, claim.leaseToken, 'again'))), won.map(() => false), 'fenced: a second completion changes nothing');
});

claims('two concurrent claims of one task: exactly one wins', async ({ repo, attempts }) => {
  for (let round = 0; round < 5; round++) {
    const task = await insert(repo);
    if (round % 2 === 1) await repo.markQueued([task]);
    const results = await Promise.all([attempts.claimTask(task.id, 'w1', LEASE_MS), attempts.claimTask(task.id, 'w2', LEASE_MS)]);
    const winners = results.filter((r) => r !== null);
    assert.is(winners.length, 1, `round ${round}: one claim wins`);
    const row = await repo.getTask(task.id);
    assert.is(row.status, TaskStatus.in_progress);
    assert.is(row.attempts, 1, 'the losing claim counted no attempt');
    assert.is(row.workerId, winners[0]?.workerId);
  }
});

claims('claimTask gives null for a running, finished or missing task', async ({ repo, attempts }) => {
  const running = await claimed({ repo, attempts });
  assert.is(await attempts.claimTask(running.id, 'w2', LEASE_MS), null);
  assert.is((await repo.getTask(running.id)).workerId, WORKER, 'the holder is unchanged');
  for (const status of ['completed', 'failed', 'cancelled'] as const) {
    const task = await finished({ repo, attempts }, status);
    assert.is(await attempts.claimTask(task.id, WORKER, LEASE_MS), null, status);
    assert.equal(await repo.getTask(task.id), task, `a ${status} task is unchanged`);
  }
  assert.is(await attempts.claimTask(MISSING_ID, WORKER, LEASE_MS), null);
});

claims('batched writes take row locks in id order, so two of them never wait for each other', async ({ repo, attempts, db }) => {
  // `high` stored first: a scan in storage order meets it first, as does one in the order listed below.
  const [lowId, highId] = [newId(), newId()].sort() as [string, string];
  const high = await claimed({ repo, attempts }, { id: highId });
  const low = await claimed({ repo, attempts }, { id: lowId });
  await db.query('BEGIN');
  try {
    await db.query('SELECT 1 FROM tasks WHERE id = $1 FOR UPDATE', [low.id]);
    // Listed high first: a heartbeat locking rows as listed would hold `high` while it waits for `low`, and the
    // completion below would wait behind it; with the two orders crossed in two batches, a deadlock.
    const beat = attempts.heartbeat([high, low].map(({ id, leaseToken }) => ({ id, leaseToken })), LEASE_MS);
    await within(lockWaitedFor(db), 5_000, 'the heartbeat to wait for the held row');
    assert.ok(await within(attempts.completeTask(high.id, high.leaseToken, 'done'), 5_000, 'the completion of the row the heartbeat has not locked'));
    await db.query('COMMIT');
    assert.equal([...(await beat).keys()], [low.id], 'the heartbeat renews the lease still held, after the lock is released');
  } finally {
    await db.query('ROLLBACK');
  }
});

/** Resolves once a statement of the repository's pool waits for a row lock. */
async function lockWaitedFor(db: pg.Client): Promise<void> {
  for (;;) {
    const { rows } = await db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()`,
    );
    if ((rows[0]?.n ?? 0) > 0) return;
  }
}

claims('claimTask leaves a task alone until its run_at', async ({ repo, attempts, db }) => {
  const later = await insert(repo, { runAt: new Date(Date.now() + 3_600_000).toISOString() });
  assert.is(await attempts.claimTask(later.id, WORKER, LEASE_MS), null);
  assert.equal(await repo.getTask(later.id), later, 'a refused claim changes nothing');
  await backdate(db, [later.id], 'run_at', 1);
  assert.is((await attempts.claimTask(later.id, WORKER, LEASE_MS))?.attempts, 1, 'claimable once due');

  // The real way a task gets a later run_at: a failed attempt waiting for its backoff.
  const retried = await claimed({ repo, attempts });
  await attempts.failAttempt(retried.id, retried.leaseToken, { message: 'flaky', attempt: 1 }, new Date(Date.now() + 3_600_000));
  assert.is(await attempts.claimTask(retried.id, WORKER, LEASE_MS), null, 'not before its backoff');
});

claims('claimTask refuses a task whose cancel was requested', async ({ repo, attempts, db }) => {
  // However a cancel request comes to sit on a task no worker runs (a race with a hand-back, say), no worker may start it.
  const task = await insert(repo);
  await repo.markQueued([task]);
  await db.query('UPDATE tasks SET cancel_requested_at = now() WHERE id = $1', [task.id]);
  assert.is(await attempts.claimTask(task.id, WORKER, LEASE_MS), null);
  const after = await repo.getTask(task.id);
  assert.is(after.status, TaskStatus.queued);
  assert.is(after.attempts, 0);
});

claims('heartbeat extends only the leases still held, and reports cancel requests', async ({ repo, attempts, db }) => {
  const held = await claimed({ repo, attempts });
  const cancelling = await claimed({ repo, attempts });
  await repo.cancelTask(cancelling.id);
  const stolen = await claimed({ repo, attempts });
  const done = await claimed({ repo, attempts });
  await attempts.completeTask(done.id, done.leaseToken, null);

  const longer = LEASE_MS * 2;
  const beats = await attempts.heartbeat(
    [
      { id: held.id, leaseToken: held.leaseToken },
      { id: cancelling.id, leaseToken: cancelling.leaseToken },
      { id: stolen.id, leaseToken: held.leaseToken },
      { id: done.id, leaseToken: done.leaseToken },
      { id: MISSING_ID, leaseToken: held.leaseToken },
    ],
    longer,
  );
  assert.equal(Object.fromEntries(beats), { [held.id]: { cancelRequested: false }, [cancelling.id]: { cancelRequested: true } });

  const { rows } = await db.query<{ id: string; lease: number }>(
    `SELECT id, extract(epoch FROM lease_expires_at - now()) * 1000 AS lease FROM tasks WHERE id = ANY($1::uuid[])`,
    [[held.id, cancelling.id, stolen.id]],
  );
  const lease = new Map(rows.map((r) => [r.id, Number(r.lease)]));
  assert.ok((lease.get(held.id) ?? 0) > LEASE_MS, `held lease extended to ${lease.get(held.id)} ms`);
  assert.ok((lease.get(cancelling.id) ?? 0) > LEASE_MS, 'a lease with a cancel request is extended too: its worker is stopping it');
  assert.ok((lease.get(stolen.id) ?? Infinity) <= LEASE_MS, 'a wrong token extends nothing');
  assert.is((await repo.getTask(done.id)).leaseExpiresAt, null, 'a finished task gets no lease back');
  assert.equal(await attempts.heartbeat([], LEASE_MS), new Map());
});

claims('completeTask stores the result of the attempt holding the lease and releases it', async ({ repo, attempts }) => {
  const task = await claimed({ repo, attempts });
  assert.is(await attempts.completeTask(task.id, task.leaseToken, { answer: 42, list: ['a'] }), true);
  const done = await repo.getTask(task.id);
  assert.is(done.status, TaskStatus.completed);
  assert.equal(done.result, { answer: 42, list: ['a'] });
  assert.ok(done.finishedAt);
  assert.is(done.attempts, 1);
  assert.is(done.leaseExpiresAt, null);
  assert.is(done.workerId, WORKER, 'who ran it is kept');
  assert.is(await attempts.completeTask(task.id, task.leaseToken, 'again'), false, 'a finished task cannot complete twice');
  assert.equal((await repo.getTask(task.id)).result, { answer: 42, list: ['a'] });
});

claims('a write with a lease token that is not the task\'s changes nothing (fencing)', async ({ repo, attempts }) => {
  const task = await claimed({ repo, attempts });
  const other = await claimed({ repo, attempts });
  const before = await repo.getTask(task.id);
  for (const token of [other.leaseToken, crypto.randomUUID()]) {
    assert.is(await attempts.completeTask(task.id, token, 'late'), false);
    assert.is(await attempts.failAttempt(task.id, token, { message: 'late', attempt: 1 }, null), null);
    assert.is(await attempts.failAttempt(task.id, token, { message: 'late', attempt: 1 }, new Date()), null);
    assert.is(await attempts.cancelRunning(task.id, token), null);
    assert.is(await attempts.handBack(task.id, token), null);
  }
  assert.equal(await repo.getTask(task.id), before);
});

claims('after a retry the first attempt\'s token no longer writes', async ({ repo, attempts }) => {
  const first = await claimed({ repo, attempts });
  assert.ok(await attempts.failAttempt(first.id, first.leaseToken, { message: 'first', attempt: 1 }, new Date(Date.now() - 1)));
  const second = await attempts.claimTask(first.id, 'worker-b', LEASE_MS);
  assert.is(second?.attempts, 2);
  const before = await repo.getTask(first.id);
  assert.is(await attempts.completeTask(first.id, first.leaseToken, 'from the first worker'), false);
  assert.is(await attempts.failAttempt(first.id, first.leaseToken, { message: 'first again', attempt: 1 }, null), null);
  assert.is(await attempts.cancelRunning(first.id, first.leaseToken), null);
  assert.is(await attempts.handBack(first.id, first.leaseToken), null);
  assert.equal(await repo.getTask(first.id), before);
  assert.is(await attempts.completeTask(first.id, second?.leaseToken as string, 'ok'), true);
  assert.is((await repo.getTask(first.id)).status, TaskStatus.completed);
});

claims('failAttempt with a retry time returns the task to pending, due then, and appends to errors', async ({ repo, attempts }) => {
  const task = await claimed({ repo, attempts });
  const retryAt = new Date(Date.now() + 60_000);
  const before = Date.now();
  const retried = await attempts.failAttempt(task.id, task.leaseToken, { message: 'flaky', attempt: 1 }, retryAt);
  assert.ok(retried);
  assert.is(retried.status, TaskStatus.pending);
  assert.is(retried.runAt, retryAt.toISOString());
  assert.is(retried.attempts, 1, 'the failed attempt still counts');
  assert.is(retried.finishedAt, null);
  assert.is(retried.result, null);
  assert.is(retried.leaseExpiresAt, null);
  assert.is(retried.errors.length, 1);
  const [entry] = retried.errors;
  assert.equal({ ...entry, at: undefined }, { message: 'flaky', attempt: 1, at: undefined });
  assert.ok(ms(entry?.at) >= before - 1 && ms(entry?.at) <= Date.now(), `at ${entry?.at} is when it failed`);
  assert.equal(retried.error, entry, 'error is the latest entry');
  assert.equal(await repo.getTask(task.id), retried);
});

claims('failAttempt keeps every attempt\'s error, oldest first, and fails for good without a retry time', async ({ repo, attempts, db }) => {
  const task = await claimed({ repo, attempts });
  await attempts.failAttempt(task.id, task.leaseToken, { message: 'one', attempt: 1 }, new Date(Date.now() + 60_000));
  await backdate(db, [task.id], 'run_at', 1);
  const second = await attempts.claimTask(task.id, WORKER, LEASE_MS);
  assert.ok(second);
  assert.equal(second.errors.map((e) => e.message), ['one'], 'a new attempt keeps the history');
  const failed = await attempts.failAttempt(task.id, second.leaseToken, { message: 'two', attempt: 2 }, null);
  assert.ok(failed);
  assert.is(failed.status, TaskStatus.failed);
  assert.ok(failed.finishedAt);
  assert.equal(failed.errors.map((e) => [e.message, e.attempt]), [['one', 1], ['two', 2]]);
  assert.equal(failed.error, failed.errors[1]);
  assert.is(await attempts.failAttempt(task.id, second.leaseToken, { message: 'again', attempt: 2 }, new Date()), null, 'failed stays failed');
  assert.equal(await repo.getTask(task.id), failed);
});

claims('handBack returns the task to pending, due now, without counting the attempt', async ({ repo, attempts }) => {
  const task = await claimed({ repo, attempts });
  const back = await attempts.handBack(task.id, task.leaseToken);
  assert.ok(back);
  assert.is(back.status, TaskStatus.pending);
  assert.is(back.attempts, 0);
  assert.is(back.startedAt, null);
  assert.is(back.leaseExpiresAt, null);
  assert.equal(back.errors, [], 'a hand-back is not a failure');
  assert.ok(ms(back.runAt) <= ms(back.updatedAt), 'due at once');
  assert.is(await attempts.handBack(task.id, task.leaseToken), null, 'a task handed back is no longer held');
  const again = await attempts.claimTask(task.id, WORKER, LEASE_MS);
  assert.is(again?.attempts, 1);
});

claims.run();

const clients = suite<Ctx>('core: tasks repository: cancel, retry and delete');
clients.before(openDatabase);
clients.after(closeDatabase);

clients('a cancel requested while a failed attempt goes back to pending ends the task cancelled, not pending', async ({ repo, attempts, db }) => {
  const task = await claimed({ repo, attempts });
  await db.query('BEGIN');
  try {
    // The cancel request is being written: the retry's check for one has passed, its update waits for the row.
    await db.query('UPDATE tasks SET cancel_requested_at = now() WHERE id = $1', [task.id]);
    const failing = attempts.failAttempt(task.id, task.leaseToken, { message: 'flaky', attempt: 1 }, new Date());
    await within(lockWaitedFor(db), 5_000, 'the retry to wait for the row');
    await db.query('COMMIT');
    const after = await failing;
    assert.is(after?.status, TaskStatus.cancelled, 'a pending task with a cancel request would never be claimed again');
  } finally {
    await db.query('ROLLBACK');
  }
  assert.is((await repo.getTask(task.id)).status, TaskStatus.cancelled);
});

clients('cancelTask: a task no worker runs is cancelled at once, a running one is asked to stop', async ({ repo, attempts }) => {
  const pending = await insert(repo);
  const now = await repo.cancelTask(pending.id);
  assert.is(now.outcome, 'cancelled');
  assert.is(now.task.status, TaskStatus.cancelled);
  assert.ok(now.task.finishedAt);
  assert.equal(await repo.getTask(pending.id), now.task);

  const queued = await insert(repo);
  await repo.markQueued([queued]);
  assert.equal([(await repo.cancelTask(queued.id)).outcome, (await repo.getTask(queued.id)).status], ['cancelled', TaskStatus.cancelled]);

  const running = await claimed({ repo, attempts });
  const asked = await repo.cancelTask(running.id);
  assert.is(asked.outcome, 'requested');
  assert.is(asked.task.status, TaskStatus.in_progress, 'only its worker may end a running attempt');
  assert.ok(asked.task.cancelRequested);
  assert.is(asked.task.finishedAt, null);
  assert.is((await repo.cancelTask(running.id)).outcome, 'requested', 'asking again is harmless');
  assert.is((await repo.getTask(running.id)).status, TaskStatus.in_progress);
});

clients('cancelTask leaves finished tasks unchanged and throws TaskNotFound for a missing one', async ({ repo, attempts }) => {
  for (const status of ['completed', 'failed', 'cancelled'] as const) {
    const task = await finished({ repo, attempts }, status);
    const result = await repo.cancelTask(task.id);
    assert.is(result.outcome, 'unchanged', status);
    assert.equal(result.task, task, `${status} as it was`);
    assert.equal(await repo.getTask(task.id), task);
  }
  await rejected(repo.cancelTask(MISSING_ID), TaskNotFound);
});

clients('cancelRunning ends the holder\'s attempt cancelled', async ({ repo, attempts }) => {
  const task = await claimed({ repo, attempts });
  await repo.cancelTask(task.id);
  const stopped = await attempts.cancelRunning(task.id, task.leaseToken);
  assert.ok(stopped);
  assert.is(stopped.status, TaskStatus.cancelled);
  assert.ok(stopped.finishedAt);
  assert.is(stopped.leaseExpiresAt, null);
  assert.equal(stopped.errors, []);
  assert.is(await attempts.cancelRunning(task.id, task.leaseToken), null, 'once');
});

// A cancel request that reaches PostgreSQL but not yet the worker (the broadcast is best effort) must still
// end the task cancelled, as the 202 of POST /cancel promises. claimTask refuses a task with a cancel request,
// so a task sent back to pending with one would be published, refused and republished forever.
clients('a running task whose cancel was requested ends cancelled when its attempt is handed back or fails with attempts left', async ({ repo, attempts }) => {
  const handedBack = await claimed({ repo, attempts });
  await repo.cancelTask(handedBack.id);
  await attempts.handBack(handedBack.id, handedBack.leaseToken);
  const retried = await claimed({ repo, attempts }, { maxAttempts: 3 });
  await repo.cancelTask(retried.id);
  await attempts.failAttempt(retried.id, retried.leaseToken, { message: 'boom', attempt: 1 }, new Date());
  for (const [what, id] of [['handed back', handedBack.id], ['retried', retried.id]] as const) {
    const task = await repo.getTask(id);
    const runnable = task.status === TaskStatus.cancelled || (await attempts.claimTask(id, WORKER, LEASE_MS)) !== null;
    assert.ok(runnable, `the ${what} task is ${task.status} with cancelRequested ${task.cancelRequested}: no claim will ever take it, nothing ends it`);
  }
});

clients('rerunTask starts a failed or cancelled task over, keeping its errors', async ({ repo, attempts }) => {
  const failed = await claimed({ repo, attempts }, { maxAttempts: 1 });
  await attempts.failAttempt(failed.id, failed.leaseToken, { message: 'broken', attempt: 1 }, null);
  const before = Date.now();
  const rerun = await repo.rerunTask(failed.id);
  assert.is(rerun.status, TaskStatus.pending);
  assert.is(rerun.attempts, 0, 'a fresh attempt budget');
  assert.is(rerun.error, null);
  assert.is(rerun.result, null);
  assert.is(rerun.startedAt, null);
  assert.is(rerun.finishedAt, null);
  assert.is(rerun.workerId, null);
  assert.equal(rerun.errors.map((e) => e.message), ['broken'], 'the history stays');
  assert.ok(ms(rerun.runAt) >= before - 1_000 && ms(rerun.runAt) <= Date.now() + 1_000, 'due now');
  const again = await attempts.claimTask(failed.id, WORKER, LEASE_MS);
  assert.is(again?.attempts, 1);

  const cancelled = await finished({ repo, attempts }, 'cancelled');
  assert.ok(cancelled.cancelRequested);
  const restarted = await repo.rerunTask(cancelled.id);
  assert.is(restarted.status, TaskStatus.pending);
  assert.not.ok(restarted.cancelRequested, 'the old cancel request does not stop the new run');
  assert.ok(await attempts.claimTask(cancelled.id, WORKER, LEASE_MS), 'claimable again');
});

clients('rerunTask refuses a task that is not failed or cancelled, and a missing one', async ({ repo, attempts }) => {
  const queued = await insert(repo);
  await repo.markQueued([queued]);
  const cases: [string, Task][] = [
    ['pending', await insert(repo)],
    ['queued', await repo.getTask(queued.id)],
    ['in_progress', await claimed({ repo, attempts })],
    ['completed', await finished({ repo, attempts }, 'completed')],
  ];
  for (const [status, task] of cases) {
    const error = await rejected(repo.rerunTask(task.id), TaskConflict);
    assert.is(error.status, 409);
    assert.match(error.message, status);
    assert.is((await repo.getTask(task.id)).status, task.status, `${status} unchanged`);
  }
  await rejected(repo.rerunTask(MISSING_ID), TaskNotFound);
});

clients('deleteTask removes a task in any status, and its history, and returns the status it had', async ({ repo, attempts, db }) => {
  const queued = await insert(repo);
  await repo.markQueued([queued]);
  const running = await claimed({ repo, attempts });
  const tasks: [TaskStatus, string][] = [
    [TaskStatus.pending, (await insert(repo)).id],
    [TaskStatus.queued, queued.id],
    [TaskStatus.in_progress, running.id],
    [TaskStatus.completed, (await finished({ repo, attempts }, 'completed')).id],
    [TaskStatus.failed, (await finished({ repo, attempts }, 'failed')).id],
    [TaskStatus.cancelled, (await finished({ repo, attempts }, 'cancelled')).id],
  ];
  for (const [status, id] of tasks) {
    assert.ok((await repo.taskEvents(id)).length > 0);
    assert.is(await repo.deleteTask(id), status);
    assert.is(await repo.findTask(id), null, `${status} task gone`);
    const { rows } = await db.query('SELECT count(*)::int AS n FROM task_events WHERE task_id = $1', [id]);
    assert.is(rows[0].n, 0, `${status} task's history gone with it`);
  }
  // The running task's worker finds its lease gone: it stops and its outcome is dropped.
  assert.is(await attempts.completeTask(running.id, running.leaseToken, 'too late'), false);
  assert.equal(await attempts.heartbeat([{ id: running.id, leaseToken: running.leaseToken }], LEASE_MS), new Map());
  await rejected(repo.deleteTask(running.id), TaskNotFound);
  await rejected(repo.deleteTask(MISSING_ID), TaskNotFound);
});

clients.run();

const maintenance = suite<Ctx>('core: tasks repository: reaper, stale queued tasks and retention');
maintenance.before(openDatabase);
maintenance.after(closeDatabase);

const ours = (tasks: readonly Task[], ids: readonly string[]) => tasks.filter((t) => ids.includes(t.id));

maintenance('reapExpiredLeases settles expired leases: retried, failed or cancelled; live leases are left', async ({ repo, attempts, upkeep, db }) => {
  const retry = await claimed({ repo, attempts }, { maxAttempts: 2 });
  const last = await claimed({ repo, attempts }, { maxAttempts: 1 });
  const cancel = await claimed({ repo, attempts }, { maxAttempts: 3 });
  await repo.cancelTask(cancel.id);
  const live = await claimed({ repo, attempts });
  await expireLeases(db, [retry.id, last.id, cancel.id]);

  const before = Date.now();
  const settled = ours(await upkeep.reapExpiredLeases(100), [retry.id, last.id, cancel.id, live.id]);
  const byId = new Map(settled.map((t) => [t.id, t]));
  assert.equal(settled.map((t) => t.id).sort(), [retry.id, last.id, cancel.id].sort());

  const retried = byId.get(retry.id) as Task;
  assert.is(retried.status, TaskStatus.pending);
  assert.is(retried.attempts, 1, 'the lost attempt counts');
  assert.equal(retried.errors.map((e) => [e.message, e.attempt]), [['worker lost', 1]]);
  assert.equal(retried.error, retried.errors[0]);
  assert.ok(ms(retried.runAt) <= Date.now() && ms(retried.runAt) >= before - 1_000, 'due at once');
  assert.is(retried.leaseExpiresAt, null);

  const failed = byId.get(last.id) as Task;
  assert.is(failed.status, TaskStatus.failed);
  assert.equal(failed.errors.map((e) => [e.message, e.attempt]), [['worker lost', 1]]);
  assert.ok(failed.finishedAt);

  const cancelled = byId.get(cancel.id) as Task;
  assert.is(cancelled.status, TaskStatus.cancelled);
  assert.equal(cancelled.errors, [], 'a cancelled task did not fail');
  assert.ok(cancelled.finishedAt);

  assert.equal(await repo.getTask(retry.id), retried, 'what the reaper returns is what is stored');
  assert.is((await repo.getTask(live.id)).status, TaskStatus.in_progress);
  for (const task of [retry, last, cancel]) assert.is(await attempts.completeTask(task.id, task.leaseToken, 'late'), false, 'the lost worker no longer writes');
  assert.equal(ours(await upkeep.reapExpiredLeases(100), [retry.id, last.id, cancel.id]), [], 'nothing is settled twice');
});

maintenance('concurrent reapers settle each expired lease exactly once', async ({ repo, attempts, upkeep, db }) => {
  const tasks: ClaimedTask[] = [];
  for (let i = 0; i < 30; i++) tasks.push(await claimed({ repo, attempts }, { maxAttempts: 1 + (i % 3) }));
  for (const task of tasks.filter((_, i) => i % 5 === 0)) await repo.cancelTask(task.id);
  const ids = tasks.map((t) => t.id);
  await expireLeases(db, ids);

  // Small batches make every reaper loop several times, so they meet on the same rows.
  const reaper = async () => {
    const settled: Task[] = [];
    for (let round = 0; round < 50; round++) {
      const batch = await upkeep.reapExpiredLeases(4);
      if (batch.length === 0) return settled;
      settled.push(...batch);
    }
    throw new Error('a reaper did not run dry');
  };
  const results = (await Promise.all([reaper(), reaper(), reaper(), reaper()])).flat();
  const mine = ours(results, ids).map((t) => t.id);
  assert.is(mine.length, ids.length, 'every expired lease was settled');
  assert.is(new Set(mine).size, ids.length, 'none was settled twice');
  const { rows } = await db.query<{ running: number; most: number }>(
    `SELECT count(*) FILTER (WHERE status = 'in_progress')::int AS running, max(jsonb_array_length(errors))::int AS most
     FROM tasks WHERE id = ANY($1::uuid[])`,
    [ids],
  );
  assert.is(rows[0]?.running, 0, 'no expired lease is left');
  assert.is(rows[0]?.most, 1, "no task got 'worker lost' twice");
});

maintenance('republishStaleQueued sends tasks queued for too long back to pending, oldest first, in batches', async ({ repo, upkeep, db }) => {
  const queue = async () => {
    const task = await insert(repo);
    await repo.markQueued([task]);
    return task;
  };
  const stale = [await queue(), await queue(), await queue()];
  const fresh = await queue();
  const pendingOld = await insert(repo);
  await backdate(db, [stale[0]?.id as string], 'updated_at', 1_800_000);
  await backdate(db, [stale[1]?.id as string], 'updated_at', 1_200_000);
  await backdate(db, [stale[2]?.id as string, pendingOld.id], 'updated_at', 600_000);

  // Small batches keep each statement's row locks few and short: `limit` is a promise, not a hint.
  assert.is(await upkeep.republishStaleQueued(300_000, 2), 2, 'the first batch holds `limit` rows');
  const statuses = async () => Promise.all(stale.map(async (t) => (await repo.getTask(t.id)).status));
  assert.equal(await statuses(), [TaskStatus.pending, TaskStatus.pending, TaskStatus.queued], 'the longest queued go first');
  assert.is(await upkeep.republishStaleQueued(300_000, 2), 1);
  assert.is(await upkeep.republishStaleQueued(300_000, 2), 0);
  for (const task of stale) {
    const now = await repo.getTask(task.id);
    assert.is(now.status, TaskStatus.pending);
    assert.ok(ms(now.runAt) <= Date.now(), 'due at once, for the relay');
  }
  assert.is((await repo.getTask(fresh.id)).status, TaskStatus.queued, 'a recently queued task is left');
  assert.is((await repo.getTask(pendingOld.id)).status, TaskStatus.pending);
});

maintenance('deleteExpiredFinished honours each task\'s retention, the default otherwise, and 0 keeps forever', async ({ repo, attempts, upkeep, db }) => {
  const DAY = 86_400_000;
  const oldDefault = await finished({ repo, attempts }, 'completed');
  const youngDefault = await finished({ repo, attempts }, 'completed');
  const shortOwn = await finished({ repo, attempts }, 'failed', { retentionMs: 60_000 });
  const longOwn = await finished({ repo, attempts }, 'cancelled', { retentionMs: 10 * DAY });
  const forever = await finished({ repo, attempts }, 'completed', { retentionMs: 0 });
  const running = await claimed({ repo, attempts }, { retentionMs: 1 });
  await backdate(db, [oldDefault.id, longOwn.id], 'finished_at', 2 * DAY);
  await backdate(db, [youngDefault.id], 'finished_at', 3_600_000);
  await backdate(db, [shortOwn.id], 'finished_at', 120_000);
  await backdate(db, [forever.id], 'finished_at', 400 * DAY);
  const exists = async (task: Task) => (await repo.findTask(task.id)) !== null;

  // A default of 0 keeps tasks without their own retention, whatever their age.
  assert.is(await upkeep.deleteExpiredFinished(0, 100), 1);
  assert.not.ok(await exists(shortOwn));
  assert.ok(await exists(oldDefault));

  assert.is(await upkeep.deleteExpiredFinished(DAY, 100), 1);
  assert.not.ok(await exists(oldDefault));
  const { rows } = await db.query('SELECT task_id FROM task_events WHERE task_id = ANY($1)', [[shortOwn.id, oldDefault.id]]);
  assert.equal(rows, [], 'the histories of swept tasks are swept too');
  for (const task of [youngDefault, longOwn, forever, running]) assert.ok(await exists(task), `${task.id} (${task.status}) kept`);
});

maintenance('deleteExpiredFinished deletes at most `limit` rows per call', async ({ repo, attempts, upkeep, db }) => {
  const tasks = [await finished({ repo, attempts }, 'completed'), await finished({ repo, attempts }, 'failed'), await finished({ repo, attempts }, 'cancelled')];
  // Older than anything the test before left behind, so that only these three are past the retention used here.
  await backdate(db, tasks.map((t) => t.id), 'finished_at', 30 * 86_400_000);
  const retentionMs = 20 * 86_400_000;
  assert.is(await upkeep.deleteExpiredFinished(retentionMs, 2), 2, 'the first batch holds `limit` rows');
  assert.is(await upkeep.deleteExpiredFinished(retentionMs, 2), 1);
  assert.is(await upkeep.deleteExpiredFinished(retentionMs, 2), 0);
  for (const task of tasks) assert.is(await repo.findTask(task.id), null);
});

maintenance.run();
