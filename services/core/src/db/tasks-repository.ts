import { type DatabasePool, type SerializableValue, sql } from 'slonik';
import { z } from 'zod';
import { TaskConflict, TaskNotFound } from '../errors.ts';
import { type Task, type TaskError, TaskSchema } from '../tasks/model.ts';
import { DELETABLE_STATUSES, type Edge, type TaskStatus, Transition } from '../tasks/state.ts';
import { translated } from './errors.ts';

export type NewTask = {
  id: string;
  type: string;
  payload: unknown;
  priority: number;
  maxAttempts: number;
};

export type TaskFilter = {
  status?: TaskStatus | undefined;
  type?: string | undefined;
  /** Only tasks with an id below this one (the previous page's last id). */
  beforeId?: string | undefined;
  limit: number;
};

const TASK_COLUMNS = sql.fragment`
  id, type, payload, priority, status, attempts, max_attempts AS "maxAttempts", result, error,
  created_at AS "createdAt", updated_at AS "updatedAt", started_at AS "startedAt", finished_at AS "finishedAt"`;

const task = sql.type(TaskSchema);
const idRow = sql.type(z.object({ id: z.uuid() }));
const statusRow = sql.type(z.object({ status: z.string() }));

const statuses = (list: readonly TaskStatus[]) => sql.array([...list], sql.fragment`task_status[]`);

/** The single compare-and-set every status change goes through: it applies only if the row is still in `edge.from`. */
function transition(edge: Edge, id: string, set: ReturnType<typeof sql.fragment>, guard = sql.fragment`TRUE`) {
  return task`
    UPDATE tasks
    SET status = ${edge.to}, updated_at = now(), ${set}
    WHERE id = ${id} AND status = ANY(${statuses(edge.from)}) AND ${guard}
    RETURNING ${TASK_COLUMNS}`;
}

const attemptIs = (attempt: number) => sql.fragment`attempts = ${attempt}`;

/**
 * Every read and write of the `tasks` table. Methods that change a task's status return `null` when the
 * task was not in a status the change starts from (someone else changed it first); none of them throws for that.
 * All methods throw {@link DatabaseUnavailable} when PostgreSQL cannot be reached.
 */
export class TasksRepository {
  readonly #pool: DatabasePool;

  constructor(pool: DatabasePool) {
    this.#pool = pool;
  }

  /** Stores a new task as `pending`. */
  async insertTask(input: NewTask): Promise<Task> {
    return translated(() =>
      this.#pool.one(task`
        INSERT INTO tasks (id, type, payload, priority, max_attempts)
        VALUES (${input.id}, ${input.type}, ${sql.jsonb(input.payload as SerializableValue)}, ${input.priority}, ${input.maxAttempts})
        RETURNING ${TASK_COLUMNS}`),
    );
  }

  async findTask(id: string): Promise<Task | null> {
    return translated(() => this.#pool.maybeOne(task`SELECT ${TASK_COLUMNS} FROM tasks WHERE id = ${id}`));
  }

  /** @throws {TaskNotFound} */
  async getTask(id: string): Promise<Task> {
    const found = await this.findTask(id);
    if (!found) throw new TaskNotFound(id);
    return found;
  }

  /** Newest first, by id (UUIDv7 ids sort by creation time). */
  async listTasks(filter: TaskFilter): Promise<readonly Task[]> {
    const conditions = [
      filter.status === undefined ? null : sql.fragment`status = ${filter.status}`,
      filter.type === undefined ? null : sql.fragment`type = ${filter.type}`,
      filter.beforeId === undefined ? null : sql.fragment`id < ${filter.beforeId}`,
    ].filter((c) => c !== null);
    const where = conditions.length === 0 ? sql.fragment`TRUE` : sql.join(conditions, sql.fragment` AND `);
    return translated(() =>
      this.#pool.any(task`SELECT ${TASK_COLUMNS} FROM tasks WHERE ${where} ORDER BY id DESC LIMIT ${filter.limit}`),
    );
  }

  /** Records the broker's confirm for these tasks; returns those moved (a worker may have claimed some already). */
  async markQueued(ids: readonly string[]): Promise<readonly Task[]> {
    if (ids.length === 0) return [];
    return translated(() =>
      this.#pool.any(task`
        UPDATE tasks SET status = ${Transition.publish.to}, updated_at = now()
        WHERE id = ANY(${sql.array([...ids], 'uuid')}) AND status = ANY(${statuses(Transition.publish.from)})
        RETURNING ${TASK_COLUMNS}`),
    );
  }

  /** Takes the task for one attempt. `null` when it is gone, finished, cancelled or already taken. */
  async claimTask(id: string): Promise<Task | null> {
    return translated(() =>
      this.#pool.maybeOne(
        transition(Transition.claim, id, sql.fragment`attempts = attempts + 1, started_at = now(), error = NULL`),
      ),
    );
  }

  /** Stores the result of `attempt`; `null` if that attempt no longer owns the task. */
  async completeTask(id: string, attempt: number, result: unknown): Promise<Task | null> {
    const set = sql.fragment`result = ${sql.jsonb(result as SerializableValue)}, finished_at = now()`;
    return translated(() => this.#pool.maybeOne(transition(Transition.complete, id, set, attemptIs(attempt))));
  }

  /** Records a failed attempt: final when `retry` is false, otherwise the task returns to `pending` to be published again. */
  async failAttempt(id: string, error: TaskError, retry: boolean): Promise<Task | null> {
    const edge = retry ? Transition.retry : Transition.fail;
    const set = retry
      ? sql.fragment`error = ${sql.jsonb(error)}`
      : sql.fragment`error = ${sql.jsonb(error)}, finished_at = now()`;
    return translated(() => this.#pool.maybeOne(transition(edge, id, set, attemptIs(error.attempt))));
  }

  /** Gives an unfinished attempt back to the queue without counting it. */
  async handBack(id: string, attempt: number): Promise<Task | null> {
    const set = sql.fragment`attempts = attempts - 1, started_at = NULL`;
    return translated(() => this.#pool.maybeOne(transition(Transition.handBack, id, set, attemptIs(attempt))));
  }

  /**
   * Removes a task that no worker is running.
   * @throws {TaskNotFound} when there is no such task.
   * @throws {TaskConflict} when a worker is running it.
   */
  async deleteTask(id: string): Promise<void> {
    const deleted = await translated(() =>
      this.#pool.maybeOne(idRow`
        DELETE FROM tasks WHERE id = ${id} AND status = ANY(${statuses(DELETABLE_STATUSES)}) RETURNING id`),
    );
    if (deleted) return;
    const current = await translated(() =>
      this.#pool.maybeOne(statusRow`SELECT status FROM tasks WHERE id = ${id}`),
    );
    if (!current) throw new TaskNotFound(id);
    throw new TaskConflict(`task ${id} is ${current.status}: a worker is running it, so it cannot be deleted now`);
  }
}
