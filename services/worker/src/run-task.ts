import { setTimeout as delay } from 'node:timers/promises';
import type { TasksRepository } from '../../core/src/db/tasks-repository.ts';
import { DatabaseUnavailable, PermanentTaskError } from '../../core/src/errors.ts';
import type { Logger } from '../../core/src/log.ts';
import type { Delivery } from '../../core/src/queue/consumer.ts';
import type { Publisher } from '../../core/src/queue/publisher.ts';
import type { Task } from '../../core/src/tasks/model.ts';
import { findTaskType } from '../../core/src/tasks/registry.ts';
import { publishTask } from '../../core/src/tasks/submit.ts';

export type RunDeps = { repository: TasksRepository; publisher: Publisher; log: Logger };

/** The handle a worker keeps on a running attempt, so that a stop can abort it and hand it back. */
export type Attempt = { task: Task; controller: AbortController; handedBack: boolean };

const DB_RETRY_DELAYS_MS = [250, 500, 1_000, 2_000, 4_000, 8_000];

/** Retries a write while PostgreSQL is unreachable, so that a short outage does not strand a finished attempt. */
async function persist<T>(write: () => Promise<T>, log: Logger): Promise<T> {
  for (const wait of DB_RETRY_DELAYS_MS) {
    try {
      return await write();
    } catch (error) {
      if (!(error instanceof DatabaseUnavailable)) throw error;
      log.warn({ retryInMs: wait }, 'PostgreSQL not reachable, retrying the write');
      await delay(wait);
    }
  }
  return write();
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** JSON round-trip: what the handler returned is stored as JSON, so it must survive as JSON. */
function toStoredResult(value: unknown): unknown {
  if (value === undefined) return null;
  try {
    return JSON.parse(JSON.stringify(value)) as unknown;
  } catch (error) {
    throw new PermanentTaskError(`handler returned a value that is not JSON: ${errorMessage(error)}`);
  }
}

/**
 * Claims the task a delivery names; `null` (and the delivery acked) when there is nothing to run:
 * the task is gone, finished, cancelled or taken by another worker.
 */
export async function claim(deps: RunDeps, delivery: Delivery): Promise<Task | null> {
  const { taskId } = delivery.message;
  let task: Task | null;
  try {
    task = await deps.repository.claimTask(taskId);
  } catch (error) {
    if (!(error instanceof DatabaseUnavailable)) throw error;
    // Pause before giving the message back so an outage does not spin deliveries in a tight loop.
    await delay(1_000);
    delivery.requeue();
    return null;
  }
  if (!task) {
    deps.log.debug({ taskId }, 'task skipped: gone, finished or already taken');
    delivery.ack();
  }
  return task;
}

/** Runs one claimed attempt to its end and records the outcome, then acks the delivery. */
export async function runAttempt(deps: RunDeps, delivery: Delivery, attempt: Attempt): Promise<void> {
  const { task, controller } = attempt;
  const number = task.attempts;
  const log = deps.log.child({ taskId: task.id, type: task.type, attempt: number });
  const taskType = findTaskType(task.type);
  log.info({ priority: task.priority }, 'task started');
  const started = performance.now();
  let outcome: { ok: true; result: unknown } | { ok: false; error: unknown };
  try {
    if (!taskType) throw new PermanentTaskError(`no handler for task type '${task.type}' in this worker`);
    const result = await taskType.run(taskType.payload.parse(task.payload), {
      taskId: task.id,
      type: task.type,
      attempt: number,
      maxAttempts: task.maxAttempts,
      signal: controller.signal,
      log,
    });
    outcome = { ok: true, result: toStoredResult(result) };
  } catch (error) {
    outcome = { ok: false, error };
  }
  // A stopping worker gave this attempt back: the next worker owns the task now.
  if (attempt.handedBack) return;
  const ms = Math.round(performance.now() - started);

  if (outcome.ok) {
    const stored = await persist(() => deps.repository.completeTask(task.id, number, outcome.result), log);
    if (stored) log.info({ ms }, 'task completed');
    else log.warn({ ms }, 'result discarded: this attempt no longer owns the task');
    delivery.ack();
    return;
  }

  const message = errorMessage(outcome.error);
  const retry = !(outcome.error instanceof PermanentTaskError) && number < task.maxAttempts;
  const stored = await persist(() => deps.repository.failAttempt(task.id, { message, attempt: number }, retry), log);
  if (!stored) log.warn({ ms, err: message }, 'failure discarded: this attempt no longer owns the task');
  else if (retry) {
    log.warn({ ms, err: message, attemptsLeft: task.maxAttempts - number }, 'task attempt failed, retrying');
    await publishTask(deps, stored, log);
  } else log.warn({ ms, err: message }, 'task failed');
  delivery.ack();
}
