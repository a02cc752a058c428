import type { TaskUpkeep } from '../db/task-upkeep.ts';
import { BrokerUnavailable } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import { Periodic } from '../periodic.ts';
import { TaskStatus } from './state.ts';

const BATCH = 1_000;

/**
 * Settles running tasks whose worker is gone (lease expired): retried, failed or cancelled, with error
 * `worker lost`. Safe to run from any number of processes at once.
 * @returns how many tasks it settled.
 */
export async function reapExpiredLeases(upkeep: TaskUpkeep, log: Logger, metrics?: Metrics): Promise<number> {
  let total = 0;
  for (;;) {
    const settled = await upkeep.reapExpiredLeases(BATCH);
    for (const task of settled) {
      metrics?.reaped.inc({ outcome: task.status });
      if (task.status !== TaskStatus.cancelled) metrics?.outcomes.inc({ type: task.type, outcome: 'worker_lost' });
      log.warn({ taskId: task.id, type: task.type, attempt: task.attempts, status: task.status }, 'lease expired: worker lost');
    }
    total += settled.length;
    if (settled.length < BATCH) return total;
  }
}

/**
 * Finds `queued` tasks whose message RabbitMQ no longer holds (queue purged or deleted) and sends them back
 * through the relay. A message cannot be looked up by id, and RabbitMQ counts only ready messages, not those a
 * consumer holds unacked, so the count of ready messages trails the count of queued tasks whenever workers are
 * taking messages. Two rules keep that from passing for loss. Only as many tasks as are missing from the count
 * are suspected: those queued longest (for longer than `staleMs`). And a suspect is sent back only when it is
 * still suspected, unchanged, one check later: a held message's task is claimed by then. A duplicate of a message
 * that was not lost after all is dropped by the worker's claim.
 */
export class LostMessages {
  readonly #upkeep: TaskUpkeep;
  readonly #readyMessages: () => Promise<number>;
  readonly #staleMs: number;
  readonly #log: Logger;
  readonly #batch: number;
  /** The suspects of the last check, with their `updated_at` then. */
  #suspects = new Map<string, string>();

  /** `batch`: the most tasks one check suspects, and so sends back. */
  constructor(upkeep: TaskUpkeep, readyMessages: () => Promise<number>, staleMs: number, log: Logger, batch = BATCH) {
    this.#upkeep = upkeep;
    this.#readyMessages = readyMessages;
    this.#staleMs = staleMs;
    this.#log = log;
    this.#batch = batch;
  }

  /** One check. @returns how many tasks it sent back. */
  async check(): Promise<number> {
    const missing = await this.#missing();
    const suspects = (limit: number) => (limit > 0 ? this.#upkeep.staleQueued(this.#staleMs, Math.min(limit, this.#batch)) : Promise.resolve([]));
    const stale = await suspects(missing);
    const republished = await this.#upkeep.republishQueued(stale.filter((t) => this.#suspects.get(t.id) === t.updatedAt));
    // After sending some back, the next longest queued are suspected at once, so a large loss drains a batch per check.
    const next = republished.length === 0 ? stale : await suspects(missing - republished.length);
    this.#suspects = new Map(next.map((t) => [t.id, t.updatedAt]));
    if (republished.length > 0) this.#log.warn({ republished: republished.length }, 'queued tasks missing from RabbitMQ sent back to the relay');
    return republished.length;
  }

  /** How many more tasks are queued than RabbitMQ holds ready messages; 0 while RabbitMQ is unreachable. */
  async #missing(): Promise<number> {
    const queued = await this.#upkeep.countByStatus(TaskStatus.queued);
    if (queued === 0) return 0;
    // While RabbitMQ is unreachable nothing can be compared; the relay is what catches up after the outage.
    const ready = await this.#readyMessages().catch((error: unknown) => {
      if (error instanceof BrokerUnavailable) return Number.POSITIVE_INFINITY;
      throw error;
    });
    return Math.max(0, queued - ready);
  }
}

/** Deletes finished tasks past their retention, in small batches. @returns how many it deleted. */
export async function sweepRetention(upkeep: TaskUpkeep, retentionMs: number, log: Logger): Promise<number> {
  let total = 0;
  for (;;) {
    const deleted = await upkeep.deleteExpiredFinished(retentionMs, BATCH);
    total += deleted;
    if (deleted < BATCH) break;
  }
  if (total > 0) log.info({ deleted: total }, 'retention sweep deleted finished tasks');
  return total;
}

export type ReaperOptions = {
  upkeep: TaskUpkeep;
  readyMessages: () => Promise<number>;
  intervalMs: number;
  queuedReconcileMs: number;
  metrics?: Metrics | undefined;
};

/** The stale requeue on a timer: expired leases reaped, then lost messages looked for. */
export function createReaper(options: ReaperOptions, log: Logger): Periodic {
  const scoped = log.child({ component: 'reaper' });
  const lost = new LostMessages(options.upkeep, options.readyMessages, options.queuedReconcileMs, scoped);
  return new Periodic(
    'reaper',
    options.intervalMs,
    async () => {
      await reapExpiredLeases(options.upkeep, scoped, options.metrics);
      await lost.check();
    },
    log,
  );
}

export type MaintenanceOptions = ReaperOptions & { retentionMs: number; retentionIntervalMs: number };

/** The API process's upkeep: the reaper, and the retention sweep (unless retention is off). */
export class Maintenance {
  readonly #reaper: Periodic;
  readonly #retention: Periodic | null;

  constructor(options: MaintenanceOptions, log: Logger) {
    const scoped = log.child({ component: 'retention' });
    this.#reaper = createReaper(options, log);
    this.#retention =
      options.retentionMs > 0
        ? new Periodic('retention', options.retentionIntervalMs, async () => void (await sweepRetention(options.upkeep, options.retentionMs, scoped)), log)
        : null;
  }

  start(): void {
    this.#reaper.start();
    this.#retention?.start();
  }

  async stop(): Promise<void> {
    await Promise.all([this.#reaper.stop(), this.#retention?.stop()]);
  }
}
