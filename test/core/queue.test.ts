import { Writable } from 'node:stream';
import amqplib, { type Channel, type ChannelModel } from 'amqplib';
import { pino } from 'pino';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { BrokerUnavailable } from '../../services/core/src/errors.ts';
import { newId } from '../../services/core/src/ids.ts';
import type { Logger } from '../../services/core/src/log.ts';
import { Broker } from '../../services/core/src/queue/broker.ts';
import { Consumer, type Delivery } from '../../services/core/src/queue/consumer.ts';
import { Publisher } from '../../services/core/src/queue/publisher.ts';
import { decodeTaskMessage, MAX_QUEUE_PRIORITY, type TaskMessage } from '../../services/core/src/queue/topology.ts';
import { deleteQueues, freePort, freshQueueName, queueDepth } from '../support/isolation.ts';
import { services } from '../support/services.ts';
import { testLog } from '../support/system.ts';
import { within } from '../support/wait.ts';

type Ctx = { amqpUrl: string; raw: ChannelModel; queues: string[]; cleanups: (() => Promise<unknown>)[] };
const test = suite<Ctx>('core: queue', {} as Ctx);

test.before(async (ctx) => {
  ctx.amqpUrl = (await services()).amqpUrl;
  ctx.raw = await amqplib.connect(ctx.amqpUrl);
  ctx.queues = [];
  ctx.cleanups = [];
});

test.after(async (ctx) => {
  // Consumers go first: a queue deleted under a live consumer makes it reconnect and declare the queue again.
  for (const cleanup of ctx.cleanups.reverse()) await within(cleanup(), 10_000, 'cleanup').catch(() => undefined);
  await ctx.raw?.close().catch(() => undefined);
  if (ctx.queues?.length) await within(deleteQueues(ctx.queues), 10_000, 'deleting the test queues');
});


function queue(ctx: Ctx): string {
  const name = freshQueueName();
  ctx.queues.push(name);
  return name;
}

function startBroker(ctx: Ctx, url = ctx.amqpUrl, log: Logger = testLog): Broker {
  // Short backoff keeps the reconnect test fast; the logic under test is the same at any delay.
  const broker = new Broker({ url, connectionName: 'conveyor-core-test', reconnect: { initialDelayMs: 50, maxDelayMs: 500 } }, log);
  ctx.cleanups.push(() => broker.close());
  return broker;
}

async function startPublisher(ctx: Ctx, broker: Broker, name: string, confirmTimeoutMs = 5_000): Promise<Publisher> {
  const publisher = new Publisher({ broker, queue: name, confirmTimeoutMs }, testLog);
  ctx.cleanups.push(() => publisher.stop());
  await publisher.start();
  return publisher;
}

/** A fresh queue, and a broker connected to RabbitMQ with a publisher on that queue. */
async function connectedPublisher(ctx: Ctx) {
  const name = queue(ctx);
  const broker = startBroker(ctx);
  const publisher = await startPublisher(ctx, broker, name);
  const connects = await connectCounter(broker);
  await broker.start();
  await connects.reached(1, 'the broker to connect');
  return { name, broker, publisher, connects };
}

/** Counts the broker's connects; hooks run in registration order, so components registered earlier are set up by then. */
async function connectCounter(broker: Broker) {
  let count = 0;
  const waiters: { n: number; resolve: () => void }[] = [];
  await broker.onConnect(async () => {
    count += 1;
    for (const waiter of waiters.filter((w) => count >= w.n)) waiter.resolve();
  });
  return {
    get count() {
      return count;
    },
    reached(n: number, what: string): Promise<void> {
      return within(
        new Promise<void>((resolve) => (count >= n ? resolve() : waiters.push({ n, resolve }))),
        10_000,
        what,
      );
    },
  };
}

/** A consumer handler that acks and records each delivery, and lets a test await the n-th one. */
/** Collects deliveries, acking each unless `ack` is false (the test then settles them). */
function inbox({ ack = true } = {}) {
  const received: Delivery[] = [];
  const waiters: { done: () => boolean; resolve: () => void }[] = [];
  const handler = async (delivery: Delivery) => {
    received.push(delivery);
    if (ack) delivery.ack();
    for (const waiter of waiters.filter((w) => w.done())) waiter.resolve();
  };
  /** Waits for `n` deliveries, or for one that matches. */
  const until = (target: number | ((d: Delivery) => boolean), what: string) => {
    const done = typeof target === 'number' ? () => received.length >= target : () => received.some(target);
    return within(new Promise<void>((resolve) => (done() ? resolve() : waiters.push({ done, resolve }))), 10_000, what);
  };
  return { received, handler, until };
}

async function startConsumer(ctx: Ctx, broker: Broker, name: string, handler: (d: Delivery) => Promise<void>, prefetch = 1): Promise<Consumer> {
  const consumer = new Consumer({ broker, queue: name, prefetch, handler }, testLog);
  ctx.cleanups.push(() => consumer.close());
  await consumer.start();
  return consumer;
}

async function rawChannel(ctx: Ctx): Promise<Channel> {
  const channel = await ctx.raw.createChannel();
  // A refused declaration closes the channel with an error event; the rejected call is what we assert on.
  channel.on('error', () => undefined);
  return channel;
}

async function refusal(call: Promise<unknown>): Promise<Error & { code?: number }> {
  try {
    await call;
  } catch (error) {
    return error as Error & { code?: number };
  }
  assert.unreachable('RabbitMQ accepted the declaration');
  throw new Error('unreachable');
}

const message = (priority: number, type = 'echo'): TaskMessage => ({ taskId: newId(), type, priority });

const publish = (publisher: Publisher, m: TaskMessage) => within(publisher.publish(m), 5_000, `the confirm of ${m.taskId}`);

/** What a publish rejected with (`null` if it resolved), within a bound well below the confirm timeout. */
const rejection = (publisher: Publisher, m: TaskMessage) =>
  within(publisher.publish(m).then(() => null, (error: unknown) => error), 2_000, 'publish to settle');

test('the tasks queue is declared durable with x-max-priority 10', async (ctx) => {
  const name = queue(ctx);
  const broker = startBroker(ctx);
  await startPublisher(ctx, broker, name);
  const connects = await connectCounter(broker);
  await broker.start();
  await connects.reached(1, 'the broker to connect');

  const same = await rawChannel(ctx);
  const ok = await same.assertQueue(name, { durable: true, arguments: { 'x-queue-type': 'classic', 'x-max-priority': MAX_QUEUE_PRIORITY } });
  assert.is(ok.queue, name, 'declaring it again with the same arguments is accepted');
  assert.is(MAX_QUEUE_PRIORITY, 10);

  const otherPriority = await refusal((await rawChannel(ctx)).assertQueue(name, { durable: true, arguments: { 'x-max-priority': 5 } }));
  assert.is(otherPriority.code, 406);
  assert.match(otherPriority.message, 'PRECONDITION_FAILED');
  assert.match(otherPriority.message, 'x-max-priority');

  const notDurable = await refusal((await rawChannel(ctx)).assertQueue(name, { durable: false, arguments: { 'x-max-priority': MAX_QUEUE_PRIORITY } }));
  assert.is(notDurable.code, 406);
  assert.match(notDurable.message, 'PRECONDITION_FAILED');
  assert.match(notDurable.message, 'durable');
});

test('publish resolves after the confirm, with the message persistent and at the task\'s priority', async (ctx) => {
  const { name, publisher } = await connectedPublisher(ctx);
  assert.ok(publisher.ready);

  const sent = message(7, 'sleep');
  await publish(publisher, sent);
  // Once confirmed, the message is in the queue: no polling needed.
  const got = await (await rawChannel(ctx)).get(name, { noAck: true });
  assert.ok(got, 'the confirmed message is in the queue');
  assert.is(got.properties.deliveryMode, 2, 'persistent');
  assert.is(got.properties.priority, 7);
  assert.is(got.properties.messageId, sent.taskId);
  assert.is(got.properties.contentType, 'application/json');
  assert.equal(decodeTaskMessage(got.content, got.properties.priority), sent);
  assert.equal(JSON.parse(got.content.toString()), { taskId: sent.taskId, type: 'sleep' }, 'the message carries no more than the id and type');
});

test('publishes in flight together all resolve and all arrive', async (ctx) => {
  const { name, publisher } = await connectedPublisher(ctx);
  await Promise.all(Array.from({ length: 25 }, (_, i) => publish(publisher, message(i % 10))));
  assert.is(await queueDepth(name), 25);
});

test('a consumer with prefetch 1 receives the highest priority first, FIFO within a priority', async (ctx) => {
  const { name, broker, publisher } = await connectedPublisher(ctx);

  const sent = [3, 9, 0, 5, 7, 5, 1].map((priority) => message(priority));
  for (const m of sent) await publish(publisher, m);
  const box = inbox();
  await startConsumer(ctx, broker, name, box.handler);
  await box.until(sent.length, `${sent.length} deliveries`);

  const fives = sent.filter((m) => m.priority === 5).map((m) => m.taskId);
  assert.equal(
    box.received.map((d) => d.message.priority),
    [9, 7, 5, 5, 3, 1, 0],
  );
  assert.equal(box.received.filter((d) => d.message.priority === 5).map((d) => d.message.taskId), fives);
  assert.equal(
    box.received.map((d) => d.message.taskId).sort(),
    sent.map((m) => m.taskId).sort(),
  );
  assert.ok(box.received.every((d) => !d.redelivered && d.message.type === 'echo'));
});

test('acks asked for together and out of order, around held and requeued deliveries, lose nothing and hold nothing back', async (ctx) => {
  const { name, broker, publisher } = await connectedPublisher(ctx);
  await Promise.all(Array.from({ length: 12 }, () => publish(publisher, message(5))));
  const { received, handler, until } = inbox({ ack: false });
  const consumer = await startConsumer(ctx, broker, name, handler, 12);
  await until(12, 'all twelve deliveries');
  // Acked out of order and in one turn, around deliveries still held: the 4th and 5th (acked later) and the 9th (requeued).
  for (const i of [11, 0, 2, 1, 5, 6, 7, 10, 9]) received[i]?.ack();
  received[8]?.requeue();
  await until(13, 'the requeued message, delivered again');
  assert.ok(received[12]?.redelivered);
  assert.is(received[12]?.message.taskId, received[8]?.message.taskId);
  received[3]?.ack();
  received[4]?.ack();
  await within(consumer.close(), 5_000, 'consumer.close()');
  // Closing the channel requeues whatever RabbitMQ was not told about: only the redelivery, still held, remains.
  assert.is(await queueDepth(name), 1);
});

test('a message that is not a task is dropped (acked) without reaching the handler', async (ctx) => {
  const { name, broker, publisher } = await connectedPublisher(ctx);

  const confirm = await ctx.raw.createConfirmChannel();
  // Higher priorities than the real task, so that the consumer meets them first.
  confirm.sendToQueue(name, Buffer.from('not json at all'), { persistent: true, priority: 9 });
  confirm.sendToQueue(name, Buffer.from(JSON.stringify({ taskId: 'not-a-uuid', type: 'echo' })), { persistent: true, priority: 8 });
  confirm.sendToQueue(name, Buffer.from(JSON.stringify({ hello: 'world' })), { persistent: true, priority: 7 });
  await within(confirm.waitForConfirms(), 5_000, 'confirms of the raw messages');
  await confirm.close();
  const task = message(0);
  await publish(publisher, task);

  const box = inbox();
  const consumer = await startConsumer(ctx, broker, name, box.handler);
  // With prefetch 1 the task can only arrive after the three before it were settled.
  await box.until(1, 'the task message');
  assert.equal(box.received.map((d) => d.message), [task]);
  await within(consumer.close(), 5_000, 'consumer.close()');
  // Closing the channel would requeue anything unacked, so an empty queue means they were acked, not held.
  assert.is(await queueDepth(name), 0);
  assert.is(box.received.length, 1);
});

/** A logger that resolves `seen(msg)` when a line with that message is written: the broker's only outward sign of a failed attempt. */
function watchedLogger() {
  const lines: { msg: string }[] = [];
  const waiters: { msg: string; resolve: () => void }[] = [];
  const stream = new Writable({
    write(chunk, _encoding, done) {
      const line = JSON.parse(chunk.toString()) as { msg: string };
      lines.push(line);
      for (const waiter of waiters.filter((w) => w.msg === line.msg)) waiter.resolve();
      done();
    },
  });
  const log = pino({ level: 'info' }, stream);
  const seen = (msg: string) =>
    within(new Promise<void>((resolve) => (lines.some((l) => l.msg === msg) ? resolve() : waiters.push({ msg, resolve }))), 10_000, `log "${msg}"`);
  return { log, seen };
}

test('publish rejects at once with BrokerUnavailable when RabbitMQ cannot be reached', async (ctx) => {
  const port = await freePort();
  const watched = watchedLogger();
  const broker = startBroker(ctx, `amqp://guest:guest@127.0.0.1:${port}`, watched.log);
  // The confirm timeout is long, so that only an immediate refusal passes the time bound below.
  const publisher = await startPublisher(ctx, broker, queue(ctx), 10_000);
  await broker.start();
  await watched.seen('RabbitMQ not responding');
  assert.not.ok(broker.connected);
  assert.not.ok(publisher.ready);

  const started = performance.now();
  const error = await rejection(publisher, message(5));
  assert.instance(error, BrokerUnavailable);
  assert.is((error as BrokerUnavailable).status, 503);
  assert.ok(performance.now() - started < 1_000, 'rejected without waiting for a confirm timeout');

  // Closing a broker that never connected must not hang on its retry loop.
  await within(broker.close(), 2_000, 'broker.close()');
  await within(publisher.stop(), 2_000, 'publisher.stop()');
  assert.not.ok(broker.connected);
});

test('after its connection drops the broker reconnects by itself; publish and consume work again', async (ctx) => {
  const name = queue(ctx);
  const broker = startBroker(ctx);
  const publisher = await startPublisher(ctx, broker, name);
  const box = inbox();
  await startConsumer(ctx, broker, name, box.handler);
  const connects = await connectCounter(broker);
  await broker.start();
  await connects.reached(1, 'the broker to connect');

  const before = message(4);
  await publish(publisher, before);
  await box.until(1, 'a delivery before the reconnect');

  await within(broker.reconnect(new Error('test')), 5_000, 'broker.reconnect()');
  assert.not.ok(publisher.ready, 'the old channel is gone');
  assert.instance(await rejection(publisher, message(4)), BrokerUnavailable);

  await connects.reached(2, 'the broker to reconnect');
  assert.ok(publisher.ready, 'the publisher reopened its channel on the new connection');
  const after = message(6);
  await publish(publisher, after);
  await box.until((d) => d.message.taskId === after.taskId, 'a delivery after the reconnect');
  // An ack sent just before the connection closed may be lost; RabbitMQ then redelivers, marked as such.
  const repeats = box.received.slice(1).filter((d) => d.message.taskId === before.taskId);
  assert.ok(repeats.every((d) => d.redelivered));
  assert.is(box.received.filter((d) => d.message.taskId === after.taskId).length, 1);
  assert.ok(broker.connected);
  // The old channels' close events must not have torn down the new connection as well.
  assert.is(connects.count, 2);
});

test('a publish to a queue deleted under the publisher is reported as not sent, and the queue is declared again', async (ctx) => {
  const { name, publisher } = await connectedPublisher(ctx);
  await (await rawChannel(ctx)).deleteQueue(name);
  // Without `mandatory`, RabbitMQ would confirm the message and drop it, and the task would look queued.
  const lost = await rejection(publisher, message(5));
  assert.instance(lost, BrokerUnavailable);
  assert.match((lost as Error).message, /did not exist/);
  await publish(publisher, message(5));
  assert.is(await queueDepth(name), 1, 'the publisher declared the queue again and the next message is stored');
});

test('a consumer whose queue is deleted under it declares it again and consumes on', async (ctx) => {
  const name = queue(ctx);
  const broker = startBroker(ctx);
  const publisher = await startPublisher(ctx, broker, name);
  const box = inbox();
  await startConsumer(ctx, broker, name, box.handler);
  const connects = await connectCounter(broker);
  await broker.start();
  await connects.reached(1, 'the broker to connect');

  await within((await rawChannel(ctx)).deleteQueue(name), 5_000, 'deleting the queue');
  await connects.reached(2, 'the broker to rebuild after RabbitMQ cancelled the consumer');
  const task = message(5);
  await publish(publisher, task);
  await box.until(1, 'a delivery from the declared-again queue');
  assert.equal(box.received.map((d) => d.message), [task]);
});

test('a stopped publisher stays stopped when the broker reconnects', async (ctx) => {
  const { name, broker, publisher, connects } = await connectedPublisher(ctx);

  await within(publisher.stop(), 5_000, 'publisher.stop()');
  assert.not.ok(publisher.ready);
  await within(broker.reconnect(new Error('test')), 5_000, 'broker.reconnect()');
  await connects.reached(2, 'the broker to reconnect');
  // A stop that a reconnect undoes would let a stopping service publish after it said it had stopped.
  assert.not.ok(publisher.ready, 'no channel reopened after stop()');
  assert.ok((await rejection(publisher, message(1))) instanceof Error, 'publish after stop() is refused');
  assert.is(await queueDepth(name), 0);
});

test.run();
