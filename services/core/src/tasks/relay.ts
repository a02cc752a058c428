import type { TaskUpkeep } from '../db/task-upkeep.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import { Periodic } from '../periodic.ts';
import type { Broker } from '../queue/broker.ts';
import type { Publisher } from '../queue/publisher.ts';

export const RELAY_BATCH = 500;

/**
 * The outbox relay: publishes every due `pending` task (stored while RabbitMQ was down, retried with a
 * backoff, delayed by `runAt`, or handed back), highest priority and oldest first, in batches whose
 * publishes are pipelined under confirms. Any number of relays may run: rows are locked with SKIP LOCKED.
 * It runs on a timer and at once after every (re)connect to RabbitMQ.
 */
export class Relay {
  readonly #upkeep: TaskUpkeep;
  readonly #publisher: Publisher;
  readonly #broker: Broker;
  readonly #log: Logger;
  readonly #periodic: Periodic;

  readonly #metrics: Metrics | undefined;

  constructor(
    options: { upkeep: TaskUpkeep; publisher: Publisher; broker: Broker; intervalMs: number; metrics?: Metrics },
    log: Logger,
  ) {
    this.#metrics = options.metrics;
    this.#upkeep = options.upkeep;
    this.#publisher = options.publisher;
    this.#broker = options.broker;
    this.#log = log.child({ component: 'relay' });
    this.#periodic = new Periodic('relay', options.intervalMs, () => this.relayOnce(), log);
  }

  async start(): Promise<void> {
    // Registered after the publisher's hook, so its channel is open when the relay runs.
    await this.#broker.onConnect(async () => this.#periodic.nudge());
    this.#periodic.start();
  }

  /** Publishes one batch. @returns whether a full batch went out (more may be due). */
  async relayOnce(): Promise<boolean> {
    if (!this.#publisher.ready) return false;
    let published = 0;
    const locked = await this.#upkeep.relayDuePending(RELAY_BATCH, async (tasks) => {
      const outcomes = await Promise.allSettled(
        tasks.map((task) => this.#publisher.publish({ taskId: task.id, type: task.type, priority: task.priority })),
      );
      const confirmed = tasks.filter((_, i) => outcomes[i]?.status === 'fulfilled').map((task) => task.id);
      published = confirmed.length;
      return confirmed;
    });
    this.#metrics?.relayed.inc(published);
    if (locked > 0) this.#log.info({ published, due: locked }, 'relayed pending tasks');
    return locked === RELAY_BATCH && published === locked;
  }

  stop(): Promise<void> {
    return this.#periodic.stop();
  }
}
