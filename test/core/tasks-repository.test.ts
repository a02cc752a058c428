import pg from 'pg';
import { sql } from 'slonik';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { z } from 'zod';
import { loadConfig } from '../../services/core/src/config.ts';
import { Database } from '../../services/core/src/db/database.ts';
import { migrate, readMigrations } from '../../services/core/src/db/migrate.ts';
import type { NewTask, TasksRepository } from '../../services/core/src/db/tasks-repository.ts';
import { TaskConflict, TaskNotFound } from '../../services/core/src/errors.ts';
import { newTaskId } from '../../services/core/src/ids.ts';
import type { Task } from '../../services/core/src/tasks/model.ts';
import { TASK_STATUSES, TaskStatus } from '../../services/core/src/tasks/state.ts';
import { dropDatabase, freshDatabaseUrl, uniqueName } from '../support/isolation.ts';
import { testLog } from '../support/system.ts';

type Ctx = { urls: string[]; database: Database; repo: TasksRepository };
const test = suite<Ctx>('core: tasks repository');

test.before(async (ctx) => {
  const url = await freshDatabaseUrl();
  ctx.urls = [url];
  ctx.database = new Database(loadConfig({ DATABASE_URL: url, LOG_LEVEL: 'silent' }), 'conveyor-test', testLog);
  await ctx.database.start();
  ctx.repo = ctx.database.tasks();
});

test.after(async (ctx) => {
  await ctx.database?.stop();
  for (const url of ctx.urls ?? []) await dropDatabase(url);
});

async function insert(repo: TasksRepository, overrides: Partial<NewTask> = {}): Promise<Task> {
  return repo.insertTask({ id: newTaskId(), type: 'echo', payload: { n: 1 }, priority: 5, maxAttempts: 3, ...overrides });
}

async function claimed(repo: TasksRepository, overrides: Partial<NewTask> = {}): Promise<Task> {
  const task = await insert(repo, overrides);
  const claim = await repo.claimTask(task.id);
  assert.ok(claim, 'a fresh task can be claimed');
  return claim;
}

const MISSING_ID = '00000000-0000-7000-8000-000000000000';

test('the task_status enum in PostgreSQL is TASK_STATUSES, in order', async ({ database }) => {
  const labels = await database.pool.anyFirst(sql.type(z.object({ enumlabel: z.string() }))`
    SELECT e.enumlabel FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid
    WHERE t.typname = 'task_status' ORDER BY e.enumsortorder`);
  assert.equal([...labels], [...TASK_STATUSES]);
});

test('insertTask stores a pending task; findTask and getTask read it back', async ({ repo }) => {
  const id = newTaskId();
  const payload = { text: 'héllo ✓', list: [1, 2.5, null, true], nested: { deep: { value: 'x' } } };
  const task = await repo.insertTask({ id, type: 'echo', payload, priority: 7, maxAttempts: 2 });
  assert.equal(
    { ...task, createdAt: undefined, updatedAt: undefined },
    {
      id,
      type: 'echo',
      payload,
      priority: 7,
      status: TaskStatus.pending,
      attempts: 0,
      maxAttempts: 2,
      result: null,
      error: null,
      createdAt: undefined,
      updatedAt: undefined,
      startedAt: null,
      finishedAt: null,
    },
  );
  assert.match(task.createdAt, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  assert.is(task.updatedAt, task.createdAt);
  assert.equal(await repo.findTask(id), task);
  assert.equal(await repo.getTask(id), task);
});

test('findTask gives null and getTask throws TaskNotFound for a missing task', async ({ repo }) => {
  assert.is(await repo.findTask(MISSING_ID), null);
  try {
    await repo.getTask(MISSING_ID);
    assert.unreachable('getTask found a missing task');
  } catch (error) {
    assert.instance(error, TaskNotFound);
    assert.is((error as TaskNotFound).status, 404);
    assert.match((error as Error).message, MISSING_ID);
  }
});

test('listTasks is newest first and filters by type and status', async ({ repo }) => {
  const type = uniqueName('list');
  const other = uniqueName('list');
  const tasks: Task[] = [];
  for (let i = 0; i < 6; i++) tasks.push(await insert(repo, { type, payload: { i } }));
  await insert(repo, { type: other });
  const newestFirst = tasks.map((t) => t.id).reverse();

  const byType = await repo.listTasks({ type, limit: 100 });
  assert.equal(byType.map((t) => t.id), newestFirst);

  const running = [tasks[1], tasks[4]] as Task[];
  for (const task of running) assert.ok(await repo.claimTask(task.id));
  const byBoth = await repo.listTasks({ type, status: TaskStatus.in_progress, limit: 100 });
  assert.equal(byBoth.map((t) => t.id), [running[1]?.id, running[0]?.id]);

  // Other tests share this database, so a status-only filter is checked for what it must and must not return.
  const byStatus = await repo.listTasks({ status: TaskStatus.in_progress, limit: 10_000 });
  assert.ok(byStatus.every((t) => t.status === TaskStatus.in_progress));
  for (const task of running) assert.ok(byStatus.some((t) => t.id === task.id));
  assert.not.ok(byStatus.some((t) => t.id === tasks[0]?.id));

  const pendingOfType = await repo.listTasks({ type, status: TaskStatus.pending, limit: 100 });
  assert.equal(pendingOfType.length, 4);

  assert.is((await repo.listTasks({ type, limit: 2 })).length, 2);
  const all = await repo.listTasks({ limit: 10_000 });
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
    const rows = await repo.listTasks({ type, beforeId, limit: 4 });
    sizes.push(rows.length);
    if (rows.length === 0) break;
    seen.push(...rows.map((t) => t.id));
    beforeId = rows.at(-1)?.id;
  }
  assert.equal(sizes, [4, 4, 3, 0]);
  assert.equal(seen, [...ids].reverse());
});

test('markQueued moves pending tasks only and returns them', async ({ repo }) => {
  const pending = await insert(repo);
  const alreadyQueued = await insert(repo);
  assert.is((await repo.markQueued([alreadyQueued.id])).length, 1);
  const running = await claimed(repo);
  const failed = await claimed(repo, { maxAttempts: 1 });
  assert.ok(await repo.failAttempt(failed.id, { message: 'no', attempt: 1 }, false));

  const moved = await repo.markQueued([pending.id, alreadyQueued.id, running.id, failed.id, MISSING_ID]);
  assert.equal(moved.map((t) => [t.id, t.status]), [[pending.id, TaskStatus.queued]]);
  assert.equal(await repo.getTask(pending.id), moved[0], 'the returned row is the stored one');
  assert.is((await repo.getTask(alreadyQueued.id)).status, TaskStatus.queued);
  assert.is((await repo.getTask(running.id)).status, TaskStatus.in_progress);
  assert.is((await repo.getTask(failed.id)).status, TaskStatus.failed);
  assert.equal(await repo.markQueued([]), []);
});

test('claimTask takes a pending or queued task for one attempt', async ({ repo }) => {
  const pending = await insert(repo);
  const claim = await repo.claimTask(pending.id);
  assert.ok(claim);
  assert.is(claim.status, TaskStatus.in_progress);
  assert.is(claim.attempts, 1);
  assert.ok(claim.startedAt);
  assert.is(claim.finishedAt, null);
  assert.equal(await repo.getTask(pending.id), claim);

  const queued = await insert(repo);
  await repo.markQueued([queued.id]);
  const second = await repo.claimTask(queued.id);
  assert.is(second?.status, TaskStatus.in_progress);
  assert.is(second?.attempts, 1);
});

test('two concurrent claims of one task: exactly one wins', async ({ repo }) => {
  for (let round = 0; round < 5; round++) {
    const task = await insert(repo);
    if (round % 2 === 1) await repo.markQueued([task.id]);
    const results = await Promise.all([repo.claimTask(task.id), repo.claimTask(task.id)]);
    const winners = results.filter((r) => r !== null);
    assert.is(winners.length, 1, `round ${round}: one claim wins`);
    const row = await repo.getTask(task.id);
    assert.is(row.status, TaskStatus.in_progress);
    assert.is(row.attempts, 1, 'the losing claim counted no attempt');
  }
});

test('claimTask gives null for a running, finished or missing task', async ({ repo }) => {
  const running = await claimed(repo);
  assert.is(await repo.claimTask(running.id), null);
  const done = await claimed(repo);
  assert.ok(await repo.completeTask(done.id, 1, 'ok'));
  assert.is(await repo.claimTask(done.id), null);
  const failed = await claimed(repo);
  assert.ok(await repo.failAttempt(failed.id, { message: 'x', attempt: 1 }, false));
  assert.is(await repo.claimTask(failed.id), null);
  assert.is(await repo.claimTask(MISSING_ID), null);
  assert.is((await repo.getTask(done.id)).attempts, 1);
});

test('completeTask stores the result of the attempt that owns the task', async ({ repo }) => {
  const task = await claimed(repo);
  const done = await repo.completeTask(task.id, 1, { answer: 42, list: ['a'] });
  assert.ok(done);
  assert.is(done.status, TaskStatus.completed);
  assert.equal(done.result, { answer: 42, list: ['a'] });
  assert.ok(done.finishedAt);
  assert.is(done.attempts, 1);
  assert.is(await repo.completeTask(task.id, 1, 'again'), null, 'a finished task cannot complete twice');
  assert.equal((await repo.getTask(task.id)).result, { answer: 42, list: ['a'] });
});

test('a stale attempt number changes nothing (fencing)', async ({ repo }) => {
  const task = await claimed(repo);
  const before = await repo.getTask(task.id);
  assert.is(await repo.completeTask(task.id, 2, 'late'), null);
  assert.is(await repo.completeTask(task.id, 0, 'late'), null);
  assert.is(await repo.failAttempt(task.id, { message: 'late', attempt: 2 }, false), null);
  assert.is(await repo.failAttempt(task.id, { message: 'late', attempt: 2 }, true), null);
  assert.is(await repo.handBack(task.id, 2), null);
  assert.equal(await repo.getTask(task.id), before);
});

test('after a retry the first attempt no longer owns the task', async ({ repo }) => {
  const task = await claimed(repo);
  assert.ok(await repo.failAttempt(task.id, { message: 'first', attempt: 1 }, true));
  const second = await repo.claimTask(task.id);
  assert.is(second?.attempts, 2);
  const before = await repo.getTask(task.id);
  assert.is(await repo.completeTask(task.id, 1, 'from the first worker'), null);
  assert.is(await repo.failAttempt(task.id, { message: 'first again', attempt: 1 }, false), null);
  assert.equal(await repo.getTask(task.id), before);
  assert.is((await repo.completeTask(task.id, 2, 'ok'))?.status, TaskStatus.completed);
});

test('failAttempt with retry returns the task to pending and keeps the error', async ({ repo }) => {
  const task = await claimed(repo);
  const retried = await repo.failAttempt(task.id, { message: 'flaky', attempt: 1 }, true);
  assert.ok(retried);
  assert.is(retried.status, TaskStatus.pending);
  assert.equal(retried.error, { message: 'flaky', attempt: 1 });
  assert.is(retried.attempts, 1, 'the failed attempt still counts');
  assert.is(retried.finishedAt, null);
  assert.is(retried.result, null);
  assert.equal(await repo.getTask(task.id), retried);
});

test('failAttempt without retry fails the task for good with finishedAt', async ({ repo }) => {
  const task = await claimed(repo);
  const failed = await repo.failAttempt(task.id, { message: 'broken', attempt: 1 }, false);
  assert.ok(failed);
  assert.is(failed.status, TaskStatus.failed);
  assert.equal(failed.error, { message: 'broken', attempt: 1 });
  assert.ok(failed.finishedAt);
  assert.is(await repo.failAttempt(task.id, { message: 'again', attempt: 1 }, true), null, 'failed is terminal');
  assert.equal(await repo.getTask(task.id), failed);
});

test('handBack returns the task to queued without counting the attempt', async ({ repo }) => {
  const task = await claimed(repo);
  const back = await repo.handBack(task.id, 1);
  assert.ok(back);
  assert.is(back.status, TaskStatus.queued);
  assert.is(back.attempts, 0);
  assert.is(back.startedAt, null);
  assert.is(await repo.handBack(task.id, 1), null, 'a task handed back is no longer in progress');
  const again = await repo.claimTask(task.id);
  assert.is(again?.attempts, 1);
});

test('deleteTask removes tasks no worker runs', async ({ repo }) => {
  const pending = await insert(repo);
  const queued = await insert(repo);
  await repo.markQueued([queued.id]);
  const completed = await claimed(repo);
  await repo.completeTask(completed.id, 1, null);
  const failed = await claimed(repo);
  await repo.failAttempt(failed.id, { message: 'x', attempt: 1 }, false);
  for (const task of [pending, queued, completed, failed]) {
    await repo.deleteTask(task.id);
    assert.is(await repo.findTask(task.id), null);
  }
});

test('deleteTask throws TaskNotFound for a missing task and TaskConflict for a running one', async ({ repo }) => {
  try {
    await repo.deleteTask(MISSING_ID);
    assert.unreachable('deleted a missing task');
  } catch (error) {
    assert.instance(error, TaskNotFound);
  }
  const running = await claimed(repo);
  try {
    await repo.deleteTask(running.id);
    assert.unreachable('deleted a running task');
  } catch (error) {
    assert.instance(error, TaskConflict);
    assert.is((error as TaskConflict).status, 409);
  }
  assert.is((await repo.getTask(running.id)).status, TaskStatus.in_progress);
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
  assert.ok(files.length > 0);

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
