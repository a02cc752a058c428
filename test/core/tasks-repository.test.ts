import pg from 'pg';
import { sql } from 'slonik';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { z } from 'zod';
import { migrate, readMigrations } from '../../services/core/src/db/migrate.ts';
import { TaskConflict, TaskNotFound } from '../../services/core/src/errors.ts';
import { newId } from '../../services/core/src/ids.ts';
import { type Backoff, DEFAULT_BACKOFF } from '../../services/core/src/tasks/backoff.ts';
import type { Task } from '../../services/core/src/tasks/model.ts';
import { TASK_STATUSES, TaskStatus } from '../../services/core/src/tasks/state.ts';
import { freshDatabaseUrl, uniqueName } from '../support/isolation.ts';
import { testLog } from '../support/system.ts';
import { within } from '../support/wait.ts';
import { claimed, closeDatabase, type Ctx, finished, FIXED, insert, ISO_MS, LEASE_MS, lockWaitedFor, MISSING_ID, ms, openDatabase, rejected, WORKER } from '../support/repositories.ts';

const test = suite<Ctx>('core: tasks repository');

test.before(openDatabase);
test.after(closeDatabase);

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
