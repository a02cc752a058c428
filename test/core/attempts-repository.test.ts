import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { newId } from '../../services/core/src/ids.ts';
import { TaskStatus } from '../../services/core/src/tasks/state.ts';
import { within } from '../support/wait.ts';
import { backdate, claimed, closeDatabase, type Ctx, finished, insert, LEASE_MS, lockWaitedFor, MISSING_ID, ms, openDatabase, WORKER } from '../support/repositories.ts';

const claims = suite<Ctx>('core: attempts repository: claims, leases and outcomes');
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
