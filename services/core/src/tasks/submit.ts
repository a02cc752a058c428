import type { TasksRepository } from '../db/tasks-repository.ts';
import { newId } from '../ids.ts';
import type { Logger } from '../log.ts';
import type { Publisher } from '../queue/publisher.ts';
import { DEFAULT_BACKOFF } from './backoff.ts';
import type { Task } from './model.ts';
import type { Submission } from './submission.ts';

export type SubmitDeps = { repository: TasksRepository; publisher: Publisher; log: Logger };

export type Submitted = { task: Task; created: boolean };

/**
 * Stores a task, then publishes it. The row is committed before the message exists, so a worker never
 * receives a task it cannot find; if RabbitMQ is down or slow the task stays `pending` for the outbox relay,
 * and is still accepted. A task due later is left to the relay. A known idempotency key returns the task it
 * created for the same tenant (`created: false`) and changes nothing.
 * @throws {DatabaseUnavailable} when the task could not be stored (nothing was accepted).
 */
export async function submitTask(deps: SubmitDeps, tenant: string, submission: Submission): Promise<Submitted> {
  return (await submitTasks(deps, tenant, [submission]))[0] as Submitted;
}

/**
 * {@link submitTask} for many tasks at once: one statement stores them all (or none), their messages go out
 * under pipelined confirms, and one statement marks the confirmed ones queued. Answers in input order.
 * @throws {DatabaseUnavailable} when the tasks could not be stored (none was accepted).
 */
export async function submitTasks(deps: SubmitDeps, tenant: string, submissions: readonly Submission[]): Promise<Submitted[]> {
  const results = await deps.repository.insertTasks(
    submissions.map((submission) => ({ id: newId(), tenant, ...submission, backoff: submission.backoff ?? DEFAULT_BACKOFF })),
  );
  const now = Date.now();
  const due: Task[] = [];
  for (const { task, created } of results) {
    if (!created) {
      deps.log.info({ taskId: task.id, type: task.type, idempotencyKey: task.idempotencyKey }, 'task already submitted with this idempotency key');
      continue;
    }
    deps.log.info({ taskId: task.id, type: task.type, priority: task.priority, runAt: task.runAt }, 'task submitted');
    if (Date.parse(task.runAt) <= now) due.push(task);
  }
  const published = await publishTasks(deps, due);
  return results.map(({ task, created }) => ({ task: published.get(task.id) ?? task, created }));
}

/** Publishes a `pending` task and records the confirm; returns the task as it now stands. */
export async function publishTask(deps: SubmitDeps, task: Task): Promise<Task> {
  return (await publishTasks(deps, [task])).get(task.id) ?? task;
}

/**
 * Publishes `pending` tasks under pipelined confirms and marks the confirmed ones queued in one statement;
 * returns each task as it now stands (a worker may have taken it already). A task whose message is not
 * confirmed stays `pending` for the relay.
 */
async function publishTasks(deps: SubmitDeps, tasks: readonly Task[]): Promise<Map<string, Task>> {
  const outcome = new Map(tasks.map((task) => [task.id, task]));
  if (tasks.length === 0) return outcome;
  const confirmed = (
    await Promise.all(
      tasks.map((task) =>
        deps.publisher.publish({ taskId: task.id, type: task.type, priority: task.priority }).then(
          () => task,
          (error: unknown) => {
            deps.log.warn({ taskId: task.id, type: task.type, err: (error as Error).message }, 'task stored but not published; the relay will publish it');
            return null;
          },
        ),
      ),
    )
  ).filter((task) => task !== null);
  if (confirmed.length === 0) return outcome;
  try {
    for (const { task } of await deps.repository.markQueued(confirmed)) outcome.set(task.id, task);
  } catch (error) {
    // The messages are out; a worker claims a `pending` task just as well, so this costs nothing but the label.
    deps.log.warn({ tasks: confirmed.length, err: (error as Error).message }, 'tasks published but could not be marked queued');
    return outcome;
  }
  for (const task of confirmed) deps.log.debug({ taskId: task.id, type: task.type }, 'task published');
  return outcome;
}
