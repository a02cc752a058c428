import amqplib from 'amqplib';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { Broker } from '../../services/core/src/queue/broker.ts';
import type { Publisher } from '../../services/core/src/queue/publisher.ts';
import type { Task } from '../../services/core/src/tasks/model.ts';
import { Relay } from '../../services/core/src/tasks/relay.ts';
import { TaskStatus } from '../../services/core/src/tasks/state.ts';
import { CoreRig, within } from '../support/core-rig.ts';
import { queueDepth } from '../support/isolation.ts';
import { services } from '../support/services.ts';
import { eventually, testLog } from '../support/system.ts';

// A fresh rig per test: the relay publishes every due pending task in the database, not only a test's own.
type Ctx = { rig: CoreRig };
const test = suite<Ctx>('core: outbox relay', {} as Ctx);

test.before.each(async (ctx) => {
  ctx.rig = await CoreRig.create();
});

test.after.each(async (ctx) => {
  await ctx.rig?.teardown();
});

// Relays in these tests run only when a test says so (relayOnce) or when nudged, never on their own timer.
const NEVER = 600_000;

function relayOn(rig: CoreRig, connection: { broker: Broker; publisher: Publisher }, intervalMs = NEVER): Relay {
  const relay = new Relay({ upkeep: rig.upkeep, publisher: connection.publisher, broker: connection.broker, intervalMs }, testLog);
  rig.onTeardown(() => relay.stop());
  return relay;
}

/** Takes every ready message off the queue, in delivery order. */
async function drain(queue: string): Promise<{ taskId: string; priority: number | undefined }[]> {
  const connection = await amqplib.connect((await services()).amqpUrl);
  try {
    const channel = await connection.createChannel();
    const taken: { taskId: string; priority: number | undefined }[] = [];
    for (let message = await channel.get(queue, { noAck: true }); message; message = await channel.get(queue, { noAck: true })) {
      taken.push({ taskId: JSON.parse(message.content.toString()).taskId, priority: message.properties.priority });
    }
    return taken;
  } finally {
    await connection.close();
  }
}

test('relayDuePending hands over due pending tasks highest priority first, then oldest, and marks queued what was confirmed', async ({ rig }) => {
  const low = await rig.insert({ priority: 0 });
  const high = await rig.insert({ priority: 9 });
  const middle = await rig.insert({ priority: 5 });
  const highLater = await rig.insert({ priority: 9 });
  const queued = await rig.insert({ priority: 9 });
  await rig.repo.markQueued([queued]);
  const notDue = await rig.insert({ priority: 9, runAt: new Date(Date.now() + 3_600_000).toISOString() });
  await rig.storedEarlier([low.id, high.id, middle.id, highLater.id, notDue.id]);

  const batches: string[][] = [];
  const confirmAll = async (tasks: readonly Task[]) => {
    batches.push(tasks.map((t) => t.id));
    return tasks.map((t) => t.id);
  };
  assert.is(await rig.upkeep.relayDuePending(2, confirmAll), 2);
  assert.is(await rig.upkeep.relayDuePending(2, confirmAll), 2);
  assert.is(await rig.upkeep.relayDuePending(2, confirmAll), 0);
  assert.equal(batches, [[high.id, highLater.id], [middle.id, low.id]]);
  const statuses = await rig.statuses([low.id, high.id, middle.id, highLater.id, notDue.id]);
  assert.equal([...statuses.values()].filter((s) => s === TaskStatus.queued).length, 4);
  assert.is(statuses.get(notDue.id), TaskStatus.pending);
});

test('relayDuePending leaves unconfirmed tasks pending for the next pass, and a failed pass changes nothing', async ({ rig }) => {
  const [a, b, c] = [await rig.insert(), await rig.insert(), await rig.insert()];
  await rig.storedEarlier([a.id, b.id, c.id]);
  assert.is(await rig.upkeep.relayDuePending(10, async () => [b.id]), 3);
  assert.equal(Object.fromEntries(await rig.statuses([a.id, b.id, c.id])), { [a.id]: 'pending', [b.id]: 'queued', [c.id]: 'pending' });

  try {
    await rig.upkeep.relayDuePending(10, async () => {
      throw new Error('publisher exploded');
    });
    assert.unreachable('the error was swallowed');
  } catch (error) {
    assert.match((error as Error).message, 'publisher exploded');
  }
  const handed: string[] = [];
  await rig.upkeep.relayDuePending(10, async (tasks) => {
    handed.push(...tasks.map((t) => t.id));
    return [];
  });
  assert.equal(handed, [a.id, c.id], 'the rows a failed pass locked are free again');
});

test('Relay publishes due pending tasks and marks them queued; same priority leaves oldest first', async ({ rig }) => {
  const connection = await rig.connect();
  await connection.connected();
  const relay = relayOn(rig, connection);
  const tasks = [await rig.insert({ priority: 3 }), await rig.insert({ priority: 3 }), await rig.insert({ priority: 7 }), await rig.insert({ priority: 3 })];
  const ids = tasks.map((t) => t.id);
  await rig.storedEarlier(ids);

  assert.is(await relay.relayOnce(), false, 'a part batch: nothing more is waiting');
  assert.is(await rig.countIn(ids, TaskStatus.queued), 4);
  assert.is(await queueDepth(rig.queue), 4);
  const messages = await drain(rig.queue);
  assert.equal(messages.map((m) => m.taskId), [ids[2], ids[0], ids[1], ids[3]]);
  assert.equal(messages.map((m) => m.priority), [7, 3, 3, 3]);
  assert.is(await relay.relayOnce(), false);
  assert.is(await queueDepth(rig.queue), 0, 'a queued task is not published again');
});

test('a task due later is published by the running relay once due, not before', async ({ rig }) => {
  const connection = await rig.connect();
  await connection.connected();
  const relay = relayOn(rig, connection, 50);
  const runAt = new Date(Date.now() + 1_500);
  const later = await rig.insert({ runAt: runAt.toISOString() });
  const now = await rig.insert();
  await rig.storedEarlier([now.id]);
  await relay.relayOnce();
  assert.equal(Object.fromEntries(await rig.statuses([later.id, now.id])), { [later.id]: 'pending', [now.id]: 'queued' });
  assert.is(await queueDepth(rig.queue), 1);

  await relay.start();
  const queued = await eventually(
    async () => {
      const task = await rig.repo.getTask(later.id);
      return task.status === TaskStatus.queued && task;
    },
    10_000,
    'the delayed task to be published',
  );
  assert.ok(Date.parse(queued.updatedAt) >= runAt.getTime(), `published at ${queued.updatedAt}, due at ${runAt.toISOString()}`);
  assert.is(await queueDepth(rig.queue), 2);
});

// A submit publishes its task right after storing it; a relay pass in between would publish it a second time.
test('a task just made pending for immediate publishing is left to its publisher for a moment', async ({ rig }) => {
  const connection = await rig.connect();
  await connection.connected();
  const relay = relayOn(rig, connection);
  const fresh = await rig.insert();
  await relay.relayOnce();
  assert.is((await rig.repo.getTask(fresh.id)).status, TaskStatus.pending);
  assert.is(await queueDepth(rig.queue), 0);
  await rig.storedEarlier([fresh.id]);
  await relay.relayOnce();
  assert.is((await rig.repo.getTask(fresh.id)).status, TaskStatus.queued, 'one its submit did not publish is published after all');
  assert.is(await queueDepth(rig.queue), 1);
});

test('two relays at once publish each task exactly once', async ({ rig }) => {
  const [first, second] = [await rig.connect(), await rig.connect()];
  await Promise.all([first.connected(), second.connected()]);
  const relays = [relayOn(rig, first, 10), relayOn(rig, second, 10)];
  const ids: string[] = [];
  for (let round = 0; round < 3; round++) {
    const wave: string[] = [];
    for (let i = 0; i < 40; i++) wave.push((await rig.insert({ priority: i % 10 })).id);
    await rig.storedEarlier(wave);
    ids.push(...wave);
    // Passes started together contend for the same rows.
    await Promise.all([...relays.map((r) => r.relayOnce()), ...relays.map((r) => r.relayOnce())]);
    if (round === 0) await Promise.all(relays.map((r) => r.start()));
  }
  await eventually(async () => (await rig.countIn(ids, TaskStatus.queued)) === ids.length, 10_000, 'every task to be queued');
  await Promise.all(relays.map((r) => r.stop()));
  assert.is(await queueDepth(rig.queue), ids.length, 'one message per task');
  const messages = await drain(rig.queue);
  assert.is(new Set(messages.map((m) => m.taskId)).size, ids.length);
});

test('tasks stored while RabbitMQ was unreachable are published as soon as the broker connects', async ({ rig }) => {
  const relays: Relay[] = [];
  const connection = await rig.connect(
    async (broker, publisher) => {
      relays.push(relayOn(rig, { broker, publisher }));
      await relays[0]?.start();
    },
    { start: false },
  );
  const relay = relays[0] as Relay;
  const ids = [(await rig.insert()).id, (await rig.insert()).id];
  await rig.storedEarlier(ids);
  assert.is(await relay.relayOnce(), false, 'no publisher channel yet');
  assert.is(await rig.countIn(ids, TaskStatus.pending), 2);

  await connection.broker.start();
  await connection.connected();
  // Far below the relay's interval: only the connect can have woken it.
  await eventually(async () => (await rig.countIn(ids, TaskStatus.queued)) === 2, 5_000, 'the stored tasks to be published');
  assert.is(await queueDepth(rig.queue), 2);
});

test('a task whose message the broker did not take stays pending and goes out on the next pass', async ({ rig }) => {
  const connection = await rig.connect();
  await connection.connected();
  const relay = relayOn(rig, connection);
  // A queue deleted under the publisher: RabbitMQ returns the message unroutable instead of storing it.
  const admin = await amqplib.connect((await services()).amqpUrl);
  try {
    await (await admin.createChannel()).deleteQueue(rig.queue);
  } finally {
    await admin.close();
  }
  const task = await rig.insert();
  await rig.storedEarlier([task.id]);
  await within(relay.relayOnce(), 5_000, 'a relay pass');
  assert.is((await rig.repo.getTask(task.id)).status, TaskStatus.pending);

  await eventually(async () => {
    await relay.relayOnce();
    return (await rig.repo.getTask(task.id)).status === TaskStatus.queued;
  }, 5_000, 'the task to be published once the queue is back');
  assert.is(await queueDepth(rig.queue), 1);
});

test.run();
