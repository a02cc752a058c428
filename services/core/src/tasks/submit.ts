import type { TasksRepository } from '../db/tasks-repository.ts';
import { newId } from '../ids.ts';
import type { Logger } from '../log.ts';
import type { Publisher } from '../queue/publisher.ts';
import { DEFAULT_BACKOFF } from './backoff.ts';
import type { Task } from './model.ts';
import type { Submission } from './submission.ts';

export type SubmitDeps = { repository: TasksRepository; publisher: Publisher; log: Logger };

/**
 * Stores a task, then publishes it. The row is committed before the message exists, so a worker never
 * receives a task it cannot find; if RabbitMQ is down or slow the task stays `pending` for the outbox relay,
 * and is still accepted. A task due later is left to the relay. A known idempotency key returns the task it
 * created for the same tenant (`created: false`) and changes nothing.
 * @throws {DatabaseUnavailable} when the task could not be stored (nothing was accepted).
 */
export async function submitTask(deps: SubmitDeps, tenant: string, submission: Submission): Promise<{ task: Task; created: boolean }> {
  const { task, created } = await deps.repository.insertTask({
    id: newId(),
    tenant,
    ...submission,
    backoff: submission.backoff ?? DEFAULT_BACKOFF,
  });
  const log = deps.log.child({ taskId: task.id, type: task.type });
  if (!created) {
    log.info({ idempotencyKey: task.idempotencyKey }, 'task already submitted with this idempotency key');
    return { task, created };
  }
  log.info({ priority: task.priority, runAt: task.runAt }, 'task submitted');
  if (Date.parse(task.runAt) > Date.now()) return { task, created };
  return { task: await publishTask(deps, task, log), created };
}

/** Publishes a `pending` task and records the confirm; returns the task as it now stands. */
export async function publishTask(deps: SubmitDeps, task: Task, log: Logger): Promise<Task> {
  try {
    await deps.publisher.publish({ taskId: task.id, type: task.type, priority: task.priority });
  } catch (error) {
    log.warn({ err: (error as Error).message }, 'task stored but not published; the relay will publish it');
    return task;
  }
  let marked: readonly Task[];
  try {
    marked = await deps.repository.markQueued([task]);
  } catch (error) {
    // The message is out; a worker claims a `pending` task just as well, so this costs nothing but the label.
    log.warn({ err: (error as Error).message }, 'task published but could not be marked queued');
    return task;
  }
  log.debug('task published');
  // Nothing marked: a worker claimed the task between the confirm and our update, so read what it is now
  // (the task is stored either way, so a failed read must not turn the answer into an error).
  return marked[0] ?? (await deps.repository.findTask(task.id).catch(() => null)) ?? task;
}
