import { setTimeout as delay } from 'node:timers/promises';
import type { AttemptsRepository } from '../../core/src/db/attempts-repository.ts';
import type { TasksRepository } from '../../core/src/db/tasks-repository.ts';
import { DatabaseUnavailable, IllegalStateError } from '../../core/src/errors.ts';
import type { Logger } from '../../core/src/log.ts';
import type { Metrics } from '../../core/src/metrics.ts';
import { Periodic } from '../../core/src/periodic.ts';
import type { Broker } from '../../core/src/queue/broker.ts';
import { Consumer, type Delivery } from '../../core/src/queue/consumer.ts';
import { ControlChannel } from '../../core/src/queue/control.ts';
import type { Publisher } from '../../core/src/queue/publisher.ts';
import type { TaskType } from '../../core/src/tasks/handler.ts';
import { TASK_TYPES } from '../../core/src/tasks/registry.ts';
import { publishTask } from '../../core/src/tasks/submit.ts';
import { Attempt, runAttempt } from './run-task.ts';
import { Slots } from './slots.ts';

export type WorkerOptions = {
  broker: Broker;
  publisher: Publisher;
  /** For hand-backs, which publish the task again and record the confirm. */
  repository: TasksRepository;
  attempts: AttemptsRepository;
  queue: string;
  concurrency: number;
  workerId: string;
  leaseMs: number;
  /** How long a stop lets running attempts finish before handing them back. */
  shutdownTimeoutMs: number;
  /** How long a stopped handler may ignore its abort signal before it is abandoned. */
  cancelGraceMs: number;
  metrics?: Metrics;
  /** The task types to run; the built-in registry unless given (embedders and tests add their own). */
  taskTypes?: ReadonlyMap<string, TaskType>;
};

type State = 'idle' | 'running' | 'stopping' | 'stopped';

/**
 * Takes task messages from the queue and runs at most `concurrency` handlers at once (see {@link Slots}). A
 * message is acked as soon as its claim commits: from then on the task's lease, renewed by a heartbeat until the
 * outcome is recorded, is what keeps it safe, so handlers may run for hours without tripping RabbitMQ's
 * delivery-acknowledgement timeout.
 */
export class Worker {
  readonly #options: WorkerOptions;
  readonly #log: Logger;
  readonly #consumer: Consumer;
  readonly #control: ControlChannel;
  readonly #heartbeat: Periodic;
  readonly #slots: Slots;
  readonly #running = new Map<string, { attempt: Attempt; done: Promise<void> }>();
  readonly #claiming = new Set<Promise<unknown>>();
  #state: State = 'idle';
  #stopping: Promise<void> | null = null;

  constructor(options: WorkerOptions, log: Logger) {
    this.#options = options;
    this.#log = log.child({ component: 'worker' });
    this.#slots = new Slots(options.concurrency);
    this.#consumer = new Consumer(
      { broker: options.broker, queue: options.queue, prefetch: options.concurrency, handler: (d) => this.#handle(d) },
      log,
    );
    this.#control = new ControlChannel(
      { broker: options.broker, queue: options.queue, onMessage: ({ taskId }) => this.#running.get(taskId)?.attempt.stop('cancel') },
      log,
    );
    this.#heartbeat = new Periodic('heartbeat', Math.floor(options.leaseMs / 3), () => this.#renewLeases(), log);
  }

  /** Attempts running right now. */
  get inFlight(): number {
    return this.#running.size;
  }

  async start(): Promise<void> {
    if (this.#state !== 'idle') throw new IllegalStateError(`cannot start a worker that is ${this.#state}`);
    this.#state = 'running';
    await this.#control.start();
    await this.#consumer.start();
    this.#heartbeat.start();
    this.#options.metrics?.concurrency.set(this.#options.concurrency);
    this.#log.info({ concurrency: this.#options.concurrency }, 'worker started');
  }

  async #handle(delivery: Delivery): Promise<void> {
    const release = this.#state === 'running' ? await this.#slots.acquire() : null;
    if (!release) {
      delivery.requeue();
      return;
    }
    try {
      // Tracked until the attempt starts or is given back, so that a stop waits for it.
      const claiming = this.#claim(delivery);
      this.#claiming.add(claiming);
      const attempt = await claiming.finally(() => this.#claiming.delete(claiming));
      if (attempt) await this.#run(attempt, release);
    } finally {
      release();
    }
  }

  async #claim(delivery: Delivery): Promise<Attempt | null> {
    const { taskId } = delivery.message;
    const { attempts, workerId, leaseMs } = this.#options;
    try {
      const task = await attempts.claimTask(taskId, workerId, leaseMs);
      // Whether the task runs here or not, the message has done its job: the row says what happens next.
      delivery.ack();
      if (!task) {
        this.#log.debug({ taskId }, 'task skipped: gone, finished, not due, cancelled or already taken');
        return null;
      }
      const attempt = new Attempt(task);
      if (this.#state !== 'running') {
        // The stop began while this claim was in flight: give the task straight back instead of starting it.
        await this.#giveBack(attempt);
        return null;
      }
      return attempt;
    } catch (error) {
      if (!(error instanceof DatabaseUnavailable)) throw error;
      // Pause before giving the message back so an outage does not spin deliveries in a tight loop.
      await delay(1_000);
      delivery.requeue();
      return null;
    }
  }

  /** Runs an attempt to its recorded outcome; `handlerSettled` is called as soon as its handler is done with. */
  async #run(attempt: Attempt, handlerSettled: () => void): Promise<void> {
    const { attempts, cancelGraceMs, metrics, taskTypes = TASK_TYPES } = this.#options;
    const deps = { attempts, taskTypes, log: this.#log, cancelGraceMs, metrics };
    const done = runAttempt(deps, attempt, handlerSettled).catch((error: unknown) => {
      this.#log.error({ taskId: attempt.task.id, err: error }, 'could not record the outcome; the lease will expire and the task be retried');
    });
    this.#running.set(attempt.task.id, { attempt, done });
    metrics?.inFlight.set(this.#running.size);
    await done;
    this.#running.delete(attempt.task.id);
    metrics?.inFlight.set(this.#running.size);
  }

  /** Renews every running attempt's lease in one statement, and stops those whose lease is gone or whose task was cancelled. */
  async #renewLeases(): Promise<void> {
    const attempts = [...this.#running.values()].map((r) => r.attempt).filter((a) => a.reason === null);
    if (attempts.length === 0) return;
    this.#options.metrics?.heartbeats.inc();
    const held = await this.#options.attempts.heartbeat(
      attempts.map((a) => ({ id: a.task.id, leaseToken: a.task.leaseToken })),
      this.#options.leaseMs,
    );
    for (const attempt of attempts) {
      const lease = held.get(attempt.task.id);
      if (!lease) attempt.stop('lease-lost');
      else if (lease.cancelRequested) attempt.stop('cancel');
    }
  }

  /**
   * Stops consuming, lets running attempts finish within the shutdown timeout, then hands the rest back:
   * their rows return to `pending` without counting the attempt and are published again at once.
   */
  stop(): Promise<void> {
    this.#stopping ??= this.#drain();
    return this.#stopping;
  }

  async #drain(): Promise<void> {
    this.#state = 'stopping';
    await this.#consumer.stop();
    this.#slots.close();
    // A claim in flight may still turn into a running attempt; wait for it so that it is seen below.
    await Promise.allSettled([...this.#claiming]);
    const all = Promise.allSettled([...this.#running.values()].map((r) => r.done));
    const timer = new AbortController();
    const finished = await Promise.race([
      all.then(() => true),
      delay(this.#options.shutdownTimeoutMs, false, { signal: timer.signal }).catch(() => false),
    ]);
    timer.abort();
    if (!finished) {
      const left = [...this.#running.values()];
      this.#log.warn({ tasks: left.length }, 'shutdown timeout reached, handing running tasks back');
      await Promise.all(left.map(({ attempt }) => this.#giveBack(attempt)));
    }
    await this.#heartbeat.stop();
    await this.#control.stop();
    await this.#consumer.close();
    this.#state = 'stopped';
    this.#log.info('worker stopped');
  }

  /** Aborts an attempt and returns its task to `pending` without counting it, then publishes it again. */
  async #giveBack(attempt: Attempt): Promise<void> {
    attempt.stop('hand-back');
    const { id, leaseToken, attempts } = attempt.task;
    const log = this.#log.child({ taskId: id, type: attempt.task.type, attempt: attempts });
    const back = await this.#options.attempts.handBack(id, leaseToken).catch((error: unknown) => {
      log.error({ err: error }, 'could not hand the task back; its lease will expire and it will be retried');
      return null;
    });
    if (!back) return;
    log.info('task handed back');
    await publishTask({ repository: this.#options.repository, publisher: this.#options.publisher, log }, back);
  }
}
