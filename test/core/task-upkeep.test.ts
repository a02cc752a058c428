import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { ClaimedTask } from '../../services/core/src/db/attempts-repository.ts';
import type { Task } from '../../services/core/src/tasks/model.ts';
import { TaskStatus } from '../../services/core/src/tasks/state.ts';
import { backdate, claimed, closeDatabase, type Ctx, expireLeases, finished, insert, ms, openDatabase } from '../support/repositories.ts';

const maintenance = suite<Ctx>('core: task upkeep: reaper, stale queued tasks and retention');
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

maintenance('staleQueued lists tasks queued for too long, longest first; republishQueued sends back those unchanged since', async ({ repo, attempts, upkeep, db }) => {
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
  const staleIds = stale.map((t) => t.id);
  const mine = <T extends { id: string }>(seen: readonly T[]) => seen.filter((t) => [...staleIds, fresh.id, pendingOld.id].includes(t.id));

  assert.equal(mine(await upkeep.staleQueued(300_000, 100)).map((t) => t.id), staleIds, 'the longest queued first; fresh and pending tasks are not listed');
  assert.is((await upkeep.staleQueued(300_000, 2)).length, 2, '`limit` bounds the list');
  const seen = mine(await upkeep.staleQueued(300_000, 100));

  // Since they were seen, the second task was queued again (a new updated_at) and the third was claimed.
  await backdate(db, [staleIds[1] as string], 'updated_at', 900_000);
  assert.ok(await attempts.claimTask(staleIds[2] as string, 'worker-1', 60_000));
  assert.equal(await upkeep.republishQueued(seen), [staleIds[0]]);
  assert.equal(await upkeep.republishQueued(seen), [], 'a task sent back is not sent back twice');

  const sent = await repo.getTask(staleIds[0] as string);
  assert.is(sent.status, TaskStatus.pending);
  assert.ok(ms(sent.runAt) <= Date.now(), 'due at once, for the relay');
  assert.equal((await repo.taskEvents(sent.id)).map((e) => e.kind).slice(-1), ['republished']);
  assert.is((await repo.getTask(staleIds[1] as string)).status, TaskStatus.queued);
  assert.is((await repo.getTask(staleIds[2] as string)).status, TaskStatus.in_progress);
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
