import { setTimeout as delay } from 'node:timers/promises';
import type { AttemptsRepository, ClaimedTask } from '../../core/src/db/attempts-repository.ts';
import { DatabaseUnavailable, PermanentTaskError } from '../../core/src/errors.ts';
import type { Logger } from '../../core/src/log.ts';
import type { Metrics } from '../../core/src/metrics.ts';
import { retryDelayMs } from '../../core/src/tasks/backoff.ts';
import type { TaskType } from '../../core/src/tasks/handler.ts';

export type RunDeps = {
  attempts: AttemptsRepository;
  /** The task types this worker runs, by name. */
  taskTypes: ReadonlyMap<string, TaskType>;
  log: Logger;
  cancelGraceMs: number;
  metrics?: Metrics | undefined;
};

/** Why an attempt was stopped before its handler finished. */
export type StopReason = 'cancel' | 'timeout' | 'lease-lost' | 'hand-back';

/** One running attempt: the claimed task, the abort signal its handler gets, and why it was stopped, if it was. */
export class Attempt {
  readonly task: ClaimedTask;
  readonly controller = new AbortController();
  #reason: StopReason | null = null;

  constructor(task: ClaimedTask) {
    this.task = task;
  }

  get reason(): StopReason | null {
    return this.#reason;
  }

  /** Aborts the handler; the first reason wins. */
  stop(reason: StopReason): void {
    if (this.#reason) return;
    this.#reason = reason;
    this.controller.abort(new Error(reason));
  }
}

type Outcome = { kind: 'ok'; result: unknown } | { kind: 'error'; error: unknown } | { kind: 'abandoned' };

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

const errorMessage = (error: unknown) => (error instanceof Error ? error.message : String(error));

/** JSON round-trip: what the handler returned is stored as JSON, so it must survive as JSON. */
function toStoredResult(value: unknown): unknown {
  if (value === undefined) return null;
  try {
    return JSON.parse(JSON.stringify(value)) as unknown;
  } catch (error) {
    throw new PermanentTaskError(`handler returned a value that is not JSON: ${errorMessage(error)}`);
  }
}

/** Runs the handler; once the attempt is stopped, waits at most the grace period for it to give up. */
async function runHandler(deps: RunDeps, attempt: Attempt, log: Logger): Promise<Outcome> {
  const { task, controller } = attempt;
  const handled: Promise<Outcome> = (async () => {
    try {
      const taskType = deps.taskTypes.get(task.type);
      if (!taskType) throw new PermanentTaskError(`no handler for task type '${task.type}' in this worker`);
      const payload = taskType.payload.parse(task.payload);
      const context = { taskId: task.id, type: task.type, attempt: task.attempts, maxAttempts: task.maxAttempts, signal: controller.signal, log };
      return { kind: 'ok' as const, result: toStoredResult(await taskType.run(payload, context)) };
    } catch (error) {
      return { kind: 'error' as const, error };
    }
  })();
  const grace = new AbortController();
  const abandoned = new Promise<Outcome>((resolve) => {
    const onStop = () =>
      delay(deps.cancelGraceMs, { kind: 'abandoned' as const }, { signal: grace.signal }).then(resolve, () => undefined);
    if (controller.signal.aborted) onStop();
    else controller.signal.addEventListener('abort', onStop, { once: true });
  });
  const outcome = await Promise.race([handled, abandoned]);
  grace.abort(SETTLED);
  return outcome;
}

// A reason given up front: abort() without one builds a DOMException, stack trace and all, for every attempt.
const SETTLED = Object.freeze({ reason: 'the attempt settled' });

/**
 * Runs one claimed attempt to its end and records the outcome with a write fenced by the attempt's lease:
 * completed, failed (retried after its backoff while attempts are left), cancelled, or — when the lease was
 * lost or the worker hands the task back — nothing at all.
 */
export async function runAttempt(deps: RunDeps, attempt: Attempt, handlerSettled: () => void): Promise<void> {
  const { task } = attempt;
  const log = deps.log.child({ taskId: task.id, type: task.type, attempt: task.attempts });
  log.info({ priority: task.priority }, 'task started');
  deps.metrics?.waitTime.observe({ type: task.type }, Math.max(0, Date.now() - Date.parse(task.runAt)) / 1000);
  const started = performance.now();
  const timeout = task.timeoutMs === null ? null : setTimeout(() => attempt.stop('timeout'), task.timeoutMs);
  const outcome = await runHandler(deps, attempt, log);
  if (timeout) clearTimeout(timeout);
  handlerSettled();
  const ms = Math.round(performance.now() - started);
  if (outcome.kind === 'abandoned') log.warn({ graceMs: deps.cancelGraceMs }, 'handler ignored its abort signal; abandoned');
  if (outcome.kind === 'error' && attempt.reason === null) deps.metrics?.handlerErrors.inc({ type: task.type });

  switch (attempt.reason) {
    case 'hand-back':
      return;
    case 'lease-lost':
      deps.metrics?.duplicateExecutions.inc({ type: task.type });
      log.warn({ ms }, 'attempt lost its lease (reaped, cancelled or deleted); its outcome is discarded');
      return;
    case 'cancel': {
      if (outcome.kind === 'ok') break;
      const stopped = await persist(() => deps.attempts.cancelRunning(task.id, task.leaseToken), log);
      if (!stopped) return;
      deps.metrics?.cancelLatency.observe({ type: task.type }, stopped.cancelLatencySeconds);
      countOutcome(deps, task.type, 'cancelled', ms);
      log.info({ ms, cancelLatencyMs: Math.round(stopped.cancelLatencySeconds * 1000) }, 'task cancelled');
      return;
    }
    case 'timeout':
      return recordFailure(deps, attempt, new Error('timeout'), ms, log);
  }
  if (outcome.kind === 'ok') {
    const stored = await persist(() => deps.attempts.completeTask(task.id, task.leaseToken, outcome.result), log);
    if (stored) {
      countOutcome(deps, task.type, 'completed', ms);
      log.info({ ms }, 'task completed');
    } else log.warn({ ms }, 'result discarded: this attempt no longer owns the task');
    return;
  }
  return recordFailure(deps, attempt, outcome.kind === 'error' ? outcome.error : new Error('abandoned'), ms, log);
}

async function recordFailure(deps: RunDeps, attempt: Attempt, error: unknown, ms: number, log: Logger): Promise<void> {
  const { task } = attempt;
  const message = errorMessage(error);
  const retry = !(error instanceof PermanentTaskError) && task.attempts < task.maxAttempts;
  const retryAt = retry ? new Date(Date.now() + retryDelayMs(task.backoff, task.attempts)) : null;
  const stored = await persist(() => deps.attempts.failAttempt(task.id, task.leaseToken, { message, attempt: task.attempts }, retryAt), log);
  if (!stored) {
    log.warn({ ms, err: message }, 'failure discarded: this attempt no longer owns the task');
    return;
  }
  countOutcome(deps, task.type, attempt.reason === 'timeout' ? 'timed_out' : retryAt ? 'retried' : 'failed', ms);
  if (retryAt) {
    deps.metrics?.retriesScheduled.inc({ type: task.type });
    log.warn({ ms, err: message, retryAt: retryAt.toISOString() }, 'task attempt failed, retrying');
  } else log.warn({ ms, err: message }, 'task failed');
}

function countOutcome(deps: RunDeps, type: string, outcome: string, ms: number): void {
  deps.metrics?.outcomes.inc({ type, outcome });
  deps.metrics?.runTime.observe({ type, outcome }, ms / 1000);
}
