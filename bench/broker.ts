// RabbitMQ alone, as Conveyor uses it: task messages (persistent, with a priority) published under confirms to
// one or several durable priority queues, each consumed with acks at the same time. Run as its own process, like
// the load generator: reads one JSON job from argv, prints one JSON result line. How the rate grows with the
// number of queues is what a design with several queues per priority class would gain (docs/scaling.md).
import { randomBytes, randomUUID } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import amqplib, { type Channel, type ConfirmChannel } from 'amqplib';
import { assertTasksQueue, encodeTaskMessage } from '../services/core/src/queue/topology.ts';

/**
 * `backlog`: publish every message first and consume them after, as when submits outrun the workers; otherwise
 * the consumers keep pace, and RabbitMQ may hand a message on before it is ever written to disk.
 */
export type BrokerJob = { amqpUrl: string; queues: number; messages: number; inFlightPerQueue: number; backlog: boolean };
export type BrokerResult = {
  queues: number;
  backlog: boolean;
  messages: number;
  elapsedMs: number;
  perSecond: number;
  /** With a backlog: the publishing alone, and the consuming alone. */
  publishedPerSecond?: number;
  consumedPerSecond?: number;
  clientCpuSeconds: number;
};

const PREFETCH = 200;
const TIMEOUT_MS = 300_000;
const ACK_EVERY = 50;

/** Publishes `count` messages to `queue`, keeping `window` unconfirmed at most. */
async function publish(channel: ConfirmChannel, queue: string, count: number, window: number): Promise<void> {
  let sent = 0;
  const lane = async () => {
    while (sent < count) {
      sent += 1;
      const message = encodeTaskMessage({ taskId: randomUUID(), type: 'echo', priority: 5 });
      await new Promise<void>((resolve, reject) =>
        channel.sendToQueue(queue, message, { persistent: true, priority: 5 }, (error) => (error ? reject(error) : resolve())),
      );
    }
  };
  await Promise.all(Array.from({ length: window }, lane));
}

/** Consumes `count` messages from `queue`, acking in bulk, and resolves after the last ack. */
function consume(channel: Channel, queue: string, count: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let received = 0;
    channel.on('error', reject);
    void channel.prefetch(PREFETCH).then(() =>
      channel.consume(queue, (message) => {
        if (!message) return reject(new Error(`consumer of ${queue} cancelled`));
        received += 1;
        if (received % ACK_EVERY === 0 || received === count) channel.ack(message, true);
        if (received === count) resolve();
      }),
    );
  });
}

async function run(job: BrokerJob): Promise<BrokerResult> {
  const connection = await amqplib.connect(job.amqpUrl);
  const suffix = randomBytes(4).toString('hex');
  const queues = Array.from({ length: job.queues }, (_, n) => `bench-broker-${suffix}-${n}`);
  const setup = await connection.createChannel();
  for (const queue of queues) await assertTasksQueue(setup, queue);
  const each = Math.ceil(job.messages / job.queues);
  // A connection each for every queue's publisher and consumer, as separate API and worker processes would have.
  const lanes = await Promise.all(queues.map(async (queue) => {
    const [publishing, consuming] = await Promise.all([amqplib.connect(job.amqpUrl), amqplib.connect(job.amqpUrl)]);
    return { queue, connections: [publishing, consuming], publisher: await publishing.createConfirmChannel(), consumer: await consuming.createChannel() };
  }));
  const cpu = process.cpuUsage();
  const start = performance.now();
  try {
    const messages = each * job.queues;
    const rate = (ms: number) => Math.round((messages / ms) * 1000);
    const timeout = delay(TIMEOUT_MS, null, { ref: false }).then(() => Promise.reject(new Error(`not every message came through within ${TIMEOUT_MS} ms`)));
    const published = () => Promise.all(lanes.map(({ queue, publisher }) => publish(publisher, queue, each, job.inFlightPerQueue)));
    const consumed = () => Promise.all(lanes.map(({ queue, consumer }) => consume(consumer, queue, each)));
    let split: Pick<BrokerResult, 'publishedPerSecond' | 'consumedPerSecond'> = {};
    if (job.backlog) {
      await Promise.race([published(), timeout]);
      const publishedMs = performance.now() - start;
      await Promise.race([consumed(), timeout]);
      split = { publishedPerSecond: rate(publishedMs), consumedPerSecond: rate(performance.now() - start - publishedMs) };
    } else await Promise.race([Promise.all([published(), consumed()]), timeout]);
    const elapsedMs = performance.now() - start;
    const used = process.cpuUsage(cpu);
    return { queues: job.queues, backlog: job.backlog, messages, elapsedMs: Math.round(elapsedMs), perSecond: rate(elapsedMs), ...split, clientCpuSeconds: Math.round((used.user + used.system) / 10_000) / 100 };
  } finally {
    await Promise.all(lanes.flatMap((lane) => lane.connections).map((c) => c.close()));
    for (const queue of queues) await setup.deleteQueue(queue);
    await connection.close();
  }
}

const job = JSON.parse(process.argv[2] ?? '{}') as BrokerJob;
process.stdout.write(`${JSON.stringify(await run(job))}\n`);
