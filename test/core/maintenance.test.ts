import amqplib from 'amqplib';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { BrokerUnavailable } from '../../services/core/src/errors.ts';
import { newId } from '../../services/core/src/ids.ts';
import type { Publisher } from '../../services/core/src/queue/publisher.ts';
import { decodeTaskMessage, encodeTaskMessage } from '../../services/core/src/queue/topology.ts';
import { LostMessages, Maintenance, sweepRetention } from '../../services/core/src/tasks/maintenance.ts';
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

/** Publishes `count` tasks through the submit path, each backdated (oldest first) past the one-minute stale mark. */
async function queuedLongAgo(rig: CoreRig, publisher: Publisher, count: number): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < count; i++) ids.push((await publishTask({ repository: rig.repo, publisher, log: testLog }, await rig.insert())).id);
  for (const [n, id] of ids.entries()) await rig.backdate([id], 'updated_at', (20 - n) * MINUTE);
  return ids;
}

async function republishedEvents(rig: CoreRig): Promise<number> {
  const { rows } = await rig.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM task_events WHERE kind = 'republished'`);
  return rows[0]?.n ?? 0;
}

test('LostMessages leaves queued tasks alone while RabbitMQ holds a message for each', async ({ rig }) => {
  const { publisher, connected } = await rig.connect();
  await connected();
  const ids = await queuedLongAgo(rig, publisher, 3);
  const lost = new LostMessages(rig.upkeep, () => publisher.depth(), MINUTE, testLog);

  assert.is(await lost.check(), 0);
  assert.is(await lost.check(), 0);
  assert.is(await rig.countIn(ids, TaskStatus.queued), 3);
  assert.is(await queueDepth(rig.queue), 3, 'nothing was published twice');
});

test('LostMessages sends stale queued tasks back through the relay when RabbitMQ lost their messages, on the second check', async ({ rig }) => {
  const { broker, publisher, connected } = await rig.connect();
  await connected();
  const ids = await queuedLongAgo(rig, publisher, 3);
  await purge(rig.queue);
  const lost = new LostMessages(rig.upkeep, () => publisher.depth(), MINUTE, testLog);

  assert.is(await lost.check(), 0, 'the first check only suspects');
  assert.is(await rig.countIn(ids, TaskStatus.queued), 3);
  assert.is(await lost.check(), 3);
  assert.is(await rig.countIn(ids, TaskStatus.pending), 3);

  const relay = new Relay({ upkeep: rig.upkeep, publisher, broker, intervalMs: 600_000 }, testLog);
  // The relay gives every task just made pending a moment, in case a submit is publishing it: skip the wait.
  await rig.storedEarlier(ids);
  await relay.relayOnce();
  assert.is(await rig.countIn(ids, TaskStatus.queued), 3);
  assert.is(await queueDepth(rig.queue), 3, 'one message per task again');
  assert.is(await lost.check(), 0, 'with a message for each again, nothing is suspected');
});

test('LostMessages sends back only as many tasks as RabbitMQ is short of, the longest queued first', async ({ rig }) => {
  const { publisher, connected } = await rig.connect();
  await connected();
  const ids = await queuedLongAgo(rig, publisher, 5);
  await purge(rig.queue);
  // Three messages stand in for three of the five: RabbitMQ is two short.
  const connection = await amqplib.connect((await services()).amqpUrl);
  try {
    const channel = await connection.createConfirmChannel();
    for (let i = 0; i < 3; i++) channel.sendToQueue(rig.queue, encodeTaskMessage({ taskId: newId(), type: 'echo', priority: 5 }), { persistent: true, priority: 5 });
    await channel.waitForConfirms();
  } finally {
    await connection.close();
  }
  const lost = new LostMessages(rig.upkeep, () => publisher.depth(), MINUTE, testLog);

  assert.is(await lost.check(), 0);
  assert.is(await lost.check(), 2);
  assert.equal(Object.fromEntries(await rig.statuses(ids)), Object.fromEntries(ids.map((id, n) => [id, n < 2 ? TaskStatus.pending : TaskStatus.queued])));
});

test('LostMessages sends a loss larger than its batch back a batch per check, after the first', async ({ rig }) => {
  const { publisher, connected } = await rig.connect();
  await connected();
  const ids = await queuedLongAgo(rig, publisher, 5);
  await purge(rig.queue);
  const lost = new LostMessages(rig.upkeep, () => publisher.depth(), MINUTE, testLog, 2);

  const sent = [];
  for (let check = 0; check < 5; check++) sent.push(await lost.check());
  assert.equal(sent, [0, 2, 2, 1, 0]);
  assert.is(await rig.countIn(ids, TaskStatus.pending), 5);
});

test('LostMessages sends back only tasks queued for longer than staleMs', async ({ rig }) => {
  const { publisher, connected } = await rig.connect();
  await connected();
  const [stale] = await queuedLongAgo(rig, publisher, 1);
  const fresh = (await publishTask({ repository: rig.repo, publisher, log: testLog }, await rig.insert())).id;
  await purge(rig.queue);
  const lost = new LostMessages(rig.upkeep, () => publisher.depth(), MINUTE, testLog);

  // A message published a moment ago may not be counted yet; a young task is given time before it is called lost.
  assert.is(await lost.check(), 0);
  assert.is(await lost.check(), 1);
  assert.equal(Object.fromEntries(await rig.statuses([stale as string, fresh])), { [stale as string]: TaskStatus.pending, [fresh]: TaskStatus.queued });
});

test('LostMessages does not take a message a worker holds unacked for a lost one', async ({ rig }) => {
  const { publisher, connected } = await rig.connect();
  await connected();
  const ids = await queuedLongAgo(rig, publisher, 3);
  // A worker has taken the first message and not yet claimed its task: RabbitMQ counts two ready messages for three queued tasks.
  const connection = await amqplib.connect((await services()).amqpUrl);
  try {
    const channel = await connection.createChannel();
    await channel.prefetch(1);
    let resolveHeld: (message: amqplib.ConsumeMessage) => void = () => undefined;
    const held = new Promise<amqplib.ConsumeMessage>((resolve) => (resolveHeld = resolve));
    const { consumerTag } = await channel.consume(rig.queue, (message) => message && resolveHeld(message));
    const message = await held;
    // This worker takes no more: the next message stays ready.
    await channel.cancel(consumerTag);
    assert.is(decodeTaskMessage(message.content, 5)?.taskId, ids[0]);
    assert.is(await queueDepth(rig.queue), 2);
    const lost = new LostMessages(rig.upkeep, () => publisher.depth(), MINUTE, testLog);

    assert.is(await lost.check(), 0, 'one task is suspected, none sent back');
    // The worker claims the task and acks, as it does within moments of a delivery.
    assert.ok(await rig.attempts.claimTask(ids[0] as string, 'worker-1', MINUTE));
    channel.ack(message);
    assert.is(await lost.check(), 0);
    assert.is(await lost.check(), 0);
  } finally {
    await connection.close();
  }
  assert.is(await republishedEvents(rig), 0);
  assert.is(await rig.countIn(ids.slice(1), TaskStatus.queued), 2);
  assert.is(await queueDepth(rig.queue), 2, 'nothing was published twice');
});

test('LostMessages compares nothing while RabbitMQ is unreachable', async ({ rig }) => {
  const { publisher, connected } = await rig.connect();
  await connected();
  const [id] = await queuedLongAgo(rig, publisher, 1);
  await publisher.stop();
  const unreachable = () => publisher.depth();
  try {
    await unreachable();
    assert.unreachable('depth answered without a channel');
  } catch (error) {
    assert.instance(error, BrokerUnavailable);
  }
  const lost = new LostMessages(rig.upkeep, unreachable, MINUTE, testLog);
  assert.is(await lost.check(), 0);
  assert.is(await lost.check(), 0);
  assert.is((await rig.repo.getTask(id as string)).status, TaskStatus.queued, 'an outage is not a lost message');
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
