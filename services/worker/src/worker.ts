import { setTimeout as delay } from 'node:timers/promises';
import type { TasksRepository } from '../../core/src/db/tasks-repository.ts';
import { IllegalStateError } from '../../core/src/errors.ts';
import type { Logger } from '../../core/src/log.ts';
import type { Broker } from '../../core/src/queue/broker.ts';
import { Consumer, type Delivery } from '../../core/src/queue/consumer.ts';
import type { Publisher } from '../../core/src/queue/publisher.ts';
import { type Attempt, claim, runAttempt } from './run-task.ts';

export type WorkerOptions = {
  broker: Broker;
  publisher: Publisher;
  repository: TasksRepository;
  queue: string;
  concurrency: number;
  /** How long a stop lets running attempts finish before handing them back. */
  shutdownTimeoutMs: number;
};

type State = 'idle' | 'running' | 'stopping' | 'stopped';

/**
 * Takes task messages from the queue and runs at most `concurrency` attempts at once (the consumer's
 * prefetch; a message is acked only once its outcome is stored).
 */
export class Worker {
  readonly #options: WorkerOptions;
  readonly #log: Logger;
  readonly #consumer: Consumer;
  readonly #running = new Map<string, { attempt: Attempt; delivery: Delivery; done: Promise<void> }>();
  readonly #claiming = new Set<Promise<unknown>>();
  #state: State = 'idle';
  #stopping: Promise<void> | null = null;

  constructor(options: WorkerOptions, log: Logger) {
    this.#options = options;
    this.#log = log.child({ component: 'worker' });
    this.#consumer = new Consumer(
      { broker: options.broker, queue: options.queue, prefetch: options.concurrency, handler: (d) => this.#handle(d) },
      log,
    );
  }

  /** Attempts running right now. */
  get inFlight(): number {
    return this.#running.size;
  }

  async start(): Promise<void> {
    if (this.#state !== 'idle') throw new IllegalStateError(`cannot start a worker that is ${this.#state}`);
    this.#state = 'running';
    await this.#consumer.start();
    this.#log.info({ concurrency: this.#options.concurrency }, 'worker started');
  }

  async #handle(delivery: Delivery): Promise<void> {
    const deps = { repository: this.#options.repository, publisher: this.#options.publisher, log: this.#log };
    if (this.#state !== 'running') {
      delivery.requeue();
      return;
    }
    this.#log.debug({ taskId: delivery.message.taskId, redelivered: delivery.redelivered }, 'task received');
    const claiming = claim(deps, delivery);
    this.#claiming.add(claiming);
    const task = await claiming.finally(() => this.#claiming.delete(claiming));
    if (!task) return;
    if (this.#state !== 'running') {
      // The stop began while this claim was in flight: give the task straight back instead of starting it.
      await this.#giveBack({ task, controller: new AbortController(), handedBack: true }, delivery);
      return;
    }
    const attempt: Attempt = { task, controller: new AbortController(), handedBack: false };
    const done = runAttempt(deps, delivery, attempt).finally(() => this.#running.delete(task.id));
    this.#running.set(task.id, { attempt, delivery, done });
    await done;
  }

  /**
   * Stops consuming, lets running attempts finish within the shutdown timeout, then hands the rest back:
   * their rows return to `queued` (the attempt is not counted) and their messages to the queue.
   */
  stop(): Promise<void> {
    this.#stopping ??= this.#drain();
    return this.#stopping;
  }

  async #drain(): Promise<void> {
    this.#state = 'stopping';
    await this.#consumer.stop();
    // A claim in flight may still turn into a running attempt; wait for it so that it is seen below.
    await Promise.allSettled([...this.#claiming]);
    const all = Promise.allSettled([...this.#running.values()].map((r) => r.done));
    const timeout = new AbortController();
    const finished = await Promise.race([all.then(() => true), delay(this.#options.shutdownTimeoutMs, false, { signal: timeout.signal }).catch(() => false)]);
    timeout.abort();
    if (!finished) await this.#handBackAll();
    await this.#consumer.close();
    this.#state = 'stopped';
    this.#log.info('worker stopped');
  }

  async #handBackAll(): Promise<void> {
    const left = [...this.#running.values()];
    this.#log.warn({ tasks: left.length }, 'shutdown timeout reached, handing running tasks back');
    await Promise.all(left.map(({ attempt, delivery }) => this.#giveBack(attempt, delivery)));
  }

  /** Aborts an attempt, returns its row to `queued` without counting it, and its message to the queue. */
  async #giveBack(attempt: Attempt, delivery: Delivery): Promise<void> {
    attempt.handedBack = true;
    attempt.controller.abort(new Error('worker stopping'));
    const { id, attempts } = attempt.task;
    const back = await this.#options.repository.handBack(id, attempts).catch((error: unknown) => {
      this.#log.error({ taskId: id, err: error }, 'could not hand the task back');
      return null;
    });
    if (back) this.#log.info({ taskId: id, type: back.type, attempt: attempts }, 'task handed back');
    delivery.requeue();
  }
}
