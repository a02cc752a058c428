import amqplib from 'amqplib';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { BrokerUnavailable } from '../../services/core/src/errors.ts';
import { Maintenance, reconcileQueued, sweepRetention } from '../../services/core/src/tasks/maintenance.ts';
import { Relay } from '../../services/core/src/tasks/relay.ts';
import { TaskStatus } from '../../services/core/src/tasks/state.ts';
import { publishTask } from '../../services/core/src/tasks/submit.ts';
import { CoreRig } from '../support/core-rig.ts';
import { queueDepth } from '../support/isolation.ts';
import { services } from '../support/services.ts';
import { eventually, testLog } from '../support/system.ts';

// A fresh rig per test: reconciliation compares counts over the whole table and queue, and the sweeps act on every row.
type Ctx = { rig: CoreRig };
const test = suite<Ctx>('core: maintenance', {} as Ctx);

test.before.each(async (ctx) => {
  ctx.rig = await CoreRig.create();
});

test.after.each(async (ctx) => {
  await ctx.rig?.teardown();
});

const MINUTE = 60_000;
const DAY = 86_400_000;

async function purge(queue: string): Promise<void> {
  const connection = await amqplib.connect((await services()).amqpUrl);
  try {
    await (await connection.createChannel()).purgeQueue(queue);
  } finally {
    await connection.close();
  }
}

test('reconcileQueued leaves queued tasks alone while RabbitMQ holds a message for each', async ({ rig }) => {
  const { publisher, connected } = await rig.connect();
  await connected();
  const deps = { repository: rig.repo, publisher, log: testLog };
  const ids: string[] = [];
  for (let i = 0; i < 3; i++) ids.push((await publishTask(deps, await rig.insert())).id);
  await rig.backdate(ids, 'updated_at', 10 * MINUTE);

  assert.is(await reconcileQueued(rig.upkeep, () => publisher.depth(), MINUTE, testLog), 0);
  assert.is(await rig.countIn(ids, TaskStatus.queued), 3);
  assert.is(await queueDepth(rig.queue), 3, 'nothing was published twice');
});

test('reconcileQueued sends stale queued tasks back through the relay when RabbitMQ lost their messages', async ({ rig }) => {
  const { broker, publisher, connected } = await rig.connect();
  await connected();
  const deps = { repository: rig.repo, publisher, log: testLog };
  const ids: string[] = [];
  for (let i = 0; i < 3; i++) ids.push((await publishTask(deps, await rig.insert())).id);
  await rig.backdate(ids, 'updated_at', 10 * MINUTE);
  await purge(rig.queue);

  assert.is(await reconcileQueued(rig.upkeep, () => publisher.depth(), MINUTE, testLog), 3);
  assert.is(await rig.countIn(ids, TaskStatus.pending), 3);

  const relay = new Relay({ upkeep: rig.upkeep, publisher, broker, intervalMs: 600_000 }, testLog);
  // The relay gives every task just made pending a moment, in case a submit is publishing it: skip the wait.
  await rig.storedEarlier(ids);
  await relay.relayOnce();
  assert.is(await rig.countIn(ids, TaskStatus.queued), 3);
  assert.is(await queueDepth(rig.queue), 3, 'one message per task again');
});

test('reconcileQueued sends back only tasks queued for longer than staleMs', async ({ rig }) => {
  const { publisher, connected } = await rig.connect();
  await connected();
  const deps = { repository: rig.repo, publisher, log: testLog };
  const stale = (await publishTask(deps, await rig.insert())).id;
  const fresh = (await publishTask(deps, await rig.insert())).id;
  await rig.backdate([stale], 'updated_at', 10 * MINUTE);
  await purge(rig.queue);

  // A message published a moment ago may not be counted yet; a young task is given time before it is called lost.
  assert.is(await reconcileQueued(rig.upkeep, () => publisher.depth(), MINUTE, testLog), 1);
  assert.equal(Object.fromEntries(await rig.statuses([stale, fresh])), { [stale]: TaskStatus.pending, [fresh]: TaskStatus.queued });
});

test('reconcileQueued compares nothing while RabbitMQ is unreachable', async ({ rig }) => {
  const { publisher, connected } = await rig.connect();
  await connected();
  const deps = { repository: rig.repo, publisher, log: testLog };
  const id = (await publishTask(deps, await rig.insert())).id;
  await rig.backdate([id], 'updated_at', 10 * MINUTE);
  await publisher.stop();
  const unreachable = () => publisher.depth();
  try {
    await unreachable();
    assert.unreachable('depth answered without a channel');
  } catch (error) {
    assert.instance(error, BrokerUnavailable);
  }
  assert.is(await reconcileQueued(rig.upkeep, unreachable, MINUTE, testLog), 0);
  assert.is((await rig.repo.getTask(id)).status, TaskStatus.queued, 'an outage is not a lost message');
});

test('sweepRetention deletes every expired finished task, past one batch, and keeps the rest', async ({ rig }) => {
  // More rows than one sweep batch: inserted in one statement, as only the sweep is under test here.
  await rig.db.query(
    `INSERT INTO tasks (id, type, payload, priority, status, max_attempts, finished_at)
     SELECT gen_random_uuid(), 'echo', '{}', 5, (ARRAY['completed', 'failed', 'cancelled']::task_status[])[1 + g % 3], 1, now() - interval '2 days'
     FROM generate_series(1, 1234) AS g`,
  );
  const young = await rig.insert();
  await rig.repo.cancelTask(young.id);
  const kept = await rig.insert({ retentionMs: 0 });
  await rig.repo.cancelTask(kept.id);
  const waiting = await rig.insert();
  await rig.backdate([kept.id], 'finished_at', 400 * DAY);

  assert.is(await sweepRetention(rig.upkeep, DAY, testLog), 1234);
  const { rows } = await rig.db.query<{ id: string }>('SELECT id FROM tasks ORDER BY id');
  assert.equal(rows.map((r) => r.id).sort(), [young.id, kept.id, waiting.id].sort());
  assert.is(await sweepRetention(rig.upkeep, DAY, testLog), 0);
});

test('Maintenance reaps an expired lease on its own schedule', async ({ rig }) => {
  const task = await rig.insert({ maxAttempts: 2 });
  const claim = await rig.attempts.claimTask(task.id, 'gone-worker', 60_000);
  assert.ok(claim);
  await rig.backdate([task.id], 'lease_expires_at', 1_000);
  const maintenance = new Maintenance(
    { upkeep: rig.upkeep, readyMessages: async () => 0, intervalMs: 50, queuedReconcileMs: MINUTE, retentionMs: 0, retentionIntervalMs: MINUTE },
    testLog,
  );
  rig.onTeardown(() => maintenance.stop());
  maintenance.start();
  const reaped = await eventually(
    async () => {
      const now = await rig.repo.getTask(task.id);
      return now.status !== TaskStatus.in_progress && now;
    },
    5_000,
    'the expired lease to be reaped',
  );
  await maintenance.stop();
  assert.is(reaped.status, TaskStatus.pending);
  assert.equal(reaped.errors.map((e) => [e.message, e.attempt]), [['worker lost', 1]]);
});

test('Maintenance sweeps finished tasks past their retention when it starts', async ({ rig }) => {
  const old = await rig.insert();
  await rig.repo.cancelTask(old.id);
  await rig.backdate([old.id], 'finished_at', 2 * DAY);
  const young = await rig.insert();
  await rig.repo.cancelTask(young.id);
  const maintenance = new Maintenance(
    { upkeep: rig.upkeep, readyMessages: async () => 0, intervalMs: MINUTE, queuedReconcileMs: MINUTE, retentionMs: DAY, retentionIntervalMs: MINUTE },
    testLog,
  );
  rig.onTeardown(() => maintenance.stop());
  maintenance.start();
  await eventually(async () => (await rig.repo.findTask(old.id)) === null, 5_000, 'the old task to be swept');
  await maintenance.stop();
  assert.ok(await rig.repo.findTask(young.id), 'a task inside its retention is kept');
});

test.run();
