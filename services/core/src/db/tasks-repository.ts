import { type DatabasePool, sql } from 'slonik';
import { Coalescer } from '../coalescer.ts';
import { TaskConflict, TaskNotFound } from '../errors.ts';
import type { Backoff } from '../tasks/backoff.ts';
import type { Task, TaskEvent } from '../tasks/model.ts';
import { type TaskStatus, TaskStatus as Status, Transition } from '../tasks/state.ts';
import { translated } from './errors.ts';
import {
  ANY_ROW,
  cancelled,
  eventRow,
  GROUPING,
  hot,
  iso,
  lockedInOrder,
  logged,
  statuses,
  statusRow,
  task,
  TASK_COLUMNS,
  transition,
} from './task-sql.ts';

/** Limits a statement to one tenant's tasks, or to none when the caller is the system itself. */
const ownedBy = (tenant: string | undefined) => (tenant === undefined ? ANY_ROW : sql.fragment`tenant = ${tenant}`);

export type NewTask = {
  id: string;
  tenant: string;
  type: string;
  payload: unknown;
  priority: number;
  maxAttempts: number;
  backoff: Backoff;
  runAt?: string | undefined;
  timeoutMs?: number | undefined;
  idempotencyKey?: string | undefined;
  retentionMs?: number | undefined;
};

export type TaskFilter = {
  tenant: string;
  status?: TaskStatus | undefined;
  type?: string | undefined;
  /** Only tasks with an id below this one (the previous page's last id). */
  beforeId?: string | undefined;
  limit: number;
};

type Inserted = { task: Task; created: boolean };

/** A task as {@link TasksRepository.markQueued} left it. */
export type Marked = { task: Task; moved: boolean };

/**
 * What clients, and the publishers that serve them, do to tasks (a worker's attempts are {@link AttemptsRepository},
 * the system's own upkeep {@link TaskUpkeep}). The methods a client reaches take a `tenant`: a task of another
 * tenant is then treated as missing; system callers (workers, the controller) leave it out and see every task.
 * Methods that change a task's status return `null` when the task was not in a status the change starts from
 * (someone else changed it first); they do not throw for that. Every method throws {@link DatabaseUnavailable}
 * when PostgreSQL cannot be reached.
 */
export class TasksRepository {
  readonly #pool: DatabasePool;
  // Group commit for the writes every task makes: concurrent calls share one statement (see Coalescer).
  readonly #inserts = new Coalescer<readonly NewTask[], Inserted[]>((lists) => this.#insertLists(lists), { ...GROUPING, sizeOf: (list) => list.length });
  readonly #marks = new Coalescer<readonly Pick<Task, 'id' | 'attempts'>[], readonly Marked[]>((lists) => this.#markQueuedLists(lists), {
    ...GROUPING,
    sizeOf: (list) => list.length,
  });

  constructor(pool: DatabasePool) {
    this.#pool = pool;
  }

  /**
   * Stores a new task as `pending`. With an idempotency key its tenant already used, stores nothing and returns
   * the task that key created (`created: false`), also when both submits race.
   */
  async insertTask(input: NewTask): Promise<Inserted> {
    return (await this.insertTasks([input]))[0] as Inserted;
  }

  /**
   * Stores new tasks as `pending` in one statement, answering in input order as {@link insertTask} does for each:
   * a used idempotency key (earlier, or earlier in the same list) returns the task it created.
   */
  async insertTasks(inputs: readonly NewTask[]): Promise<Inserted[]> {
    if (inputs.length === 0) return [];
    return this.#inserts.run(inputs);
  }

  async #insertLists(lists: readonly (readonly NewTask[])[]): Promise<Inserted[][]> {
    const all = await this.#insertMany(lists.flat());
    let at = 0;
    return lists.map((list) => all.slice(at, (at += list.length)));
  }

  async #insertMany(inputs: readonly NewTask[]): Promise<Inserted[]> {
    const column = <T,>(pick: (input: NewTask) => T) => inputs.map(pick);
    return translated(async () => {
      const inserted = await this.#pool.any(hot.insert`${logged(
        sql.fragment`INSERT INTO tasks (id, tenant, type, payload, priority, max_attempts, backoff, run_at, timeout_ms, idempotency_key, retention_ms)
        SELECT id, tenant, type, payload, priority, max_attempts, backoff, coalesce(run_at, now()), timeout_ms, idempotency_key, retention_ms
        FROM unnest(
          ${sql.array(column((t) => t.id), 'uuid')}, ${sql.array(column((t) => t.tenant), 'text')}, ${sql.array(column((t) => t.type), 'text')},
          ${sql.array(column((t) => JSON.stringify(t.payload)), 'jsonb')}, ${sql.array(column((t) => t.priority), 'int2')},
          ${sql.array(column((t) => t.maxAttempts), 'int4')}, ${sql.array(column((t) => JSON.stringify(t.backoff)), 'jsonb')},
          ${sql.array(column((t) => t.runAt ?? null), 'timestamptz')}, ${sql.array(column((t) => t.timeoutMs ?? null), 'int4')},
          ${sql.array(column((t) => t.idempotencyKey ?? null), 'text')}, ${sql.array(column((t) => t.retentionMs ?? null), 'int8')}
        ) AS input(id, tenant, type, payload, priority, max_attempts, backoff, run_at, timeout_ms, idempotency_key, retention_ms)
        ON CONFLICT (tenant, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING`,
        { kind: 'submitted', detail: sql.fragment`jsonb_build_object('priority', priority, 'runAt', ${iso(sql.fragment`run_at`)})` },
      )}`);
      const created = new Map(inserted.map((row) => [row.id, row]));
      const reused = inputs.filter((input) => !created.has(input.id));
      const existing = new Map<string, Task>();
      if (reused.length > 0) {
        const rows = await this.#pool.any(task`
          SELECT ${TASK_COLUMNS} FROM tasks
          WHERE (tenant, idempotency_key) IN (
            SELECT * FROM unnest(${sql.array(reused.map((t) => t.tenant), 'text')}, ${sql.array(reused.map((t) => t.idempotencyKey ?? null), 'text')}))`);
        for (const row of rows) existing.set(`${row.tenant}\u0000${row.idempotencyKey}`, row);
      }
      return inputs.map((input) => {
        const mine = created.get(input.id);
        if (mine) return { task: mine, created: true };
        const first = existing.get(`${input.tenant}\u0000${input.idempotencyKey}`);
        if (!first) throw new TaskConflict(`the task with idempotency key '${input.idempotencyKey}' was deleted while this submit ran; submit again`);
        return { task: first, created: false };
      });
    });
  }

  async findTask(id: string, tenant?: string): Promise<Task | null> {
    const read = tenant === undefined
      ? hot.readAny`SELECT ${TASK_COLUMNS} FROM tasks WHERE id = ${id}`
      : hot.readOwned`SELECT ${TASK_COLUMNS} FROM tasks WHERE id = ${id} AND tenant = ${tenant}`;
    return translated(() => this.#pool.maybeOne(read));
  }

  /** @throws {TaskNotFound} */
  async getTask(id: string, tenant?: string): Promise<Task> {
    const found = await this.findTask(id, tenant);
    if (!found) throw new TaskNotFound(id);
    return found;
  }

  /** Newest first, by id (UUIDv7 ids sort by creation time). */
  async listTasks(filter: TaskFilter): Promise<readonly Task[]> {
    const conditions = [
      sql.fragment`tenant = ${filter.tenant}`,
      filter.status === undefined ? null : sql.fragment`status = ${filter.status}`,
      filter.type === undefined ? null : sql.fragment`type = ${filter.type}`,
      filter.beforeId === undefined ? null : sql.fragment`id < ${filter.beforeId}`,
    ].filter((c) => c !== null);
    const where = sql.join(conditions, sql.fragment` AND `);
    return translated(() =>
      this.#pool.any(task`SELECT ${TASK_COLUMNS} FROM tasks WHERE ${where} ORDER BY id DESC LIMIT ${filter.limit}`),
    );
  }

  /**
   * Records the broker's confirm for these tasks, as the publisher saw them, and answers with each task as it now
   * stands (`moved` when this call made it `queued`; a task deleted since is left out). A task whose attempt count
   * changed since (a worker claimed it, and perhaps already failed it back to `pending` for a retry) is left
   * alone: its confirmed message was for an earlier state.
   */
  async markQueued(tasks: readonly Pick<Task, 'id' | 'attempts'>[]): Promise<readonly Marked[]> {
    if (tasks.length === 0) return [];
    return this.#marks.run(tasks);
  }

  async #markQueuedLists(lists: readonly (readonly Pick<Task, 'id' | 'attempts'>[])[]): Promise<(readonly Marked[])[]> {
    const all = lists.flat();
    const ids = sql.array(all.map((t) => t.id), 'uuid');
    const attempts = sql.array(all.map((t) => t.attempts), 'int4');
    const pendingAsSeen = sql.fragment`(id, attempts) IN (SELECT * FROM unnest(${ids}, ${attempts})) AND status = ANY(${statuses(Transition.publish.from)})`;
    const stands = new Map<string, Marked>();
    await translated(async () => {
      const moved = await this.#pool.any(hot.markQueued`${logged(
        sql.fragment`UPDATE tasks SET status = ${Transition.publish.to}, updated_at = now()
          WHERE id = ANY(${lockedInOrder(all.map((t) => t.id), pendingAsSeen)}) AND ${pendingAsSeen}`,
        { kind: 'published' },
      )}`);
      for (const row of moved) stands.set(row.id, { task: row, moved: true });
      // The rest were taken by a worker before the confirm came (usual when the queue is short): one read for all.
      const rest = all.filter((t) => !stands.has(t.id));
      if (rest.length === 0) return;
      const rows = await this.#pool.any(hot.read`SELECT ${TASK_COLUMNS} FROM tasks WHERE id = ANY(${sql.array(rest.map((t) => t.id), 'uuid')})`);
      for (const row of rows) stands.set(row.id, { task: row, moved: false });
    });
    return lists.map((list) => list.flatMap((t) => stands.get(t.id) ?? []));
  }

  /**
   * A client's cancel. A task no worker runs becomes `cancelled` at once; a running one is marked
   * `cancelRequested` (its worker stops it). Finished tasks are returned unchanged.
   * @throws {TaskNotFound}
   */
  async cancelTask(id: string, tenant?: string): Promise<{ task: Task; outcome: 'cancelled' | 'requested' | 'unchanged' }> {
    const owned = ownedBy(tenant);
    return translated(() =>
      this.#pool.transaction(async (tx) => {
        const now = await tx.maybeOne(transition(Transition.cancel, id, sql.fragment`finished_at = now(), cancel_requested_at = now()`, owned, { kind: 'cancelled' }));
        if (now) return { task: now, outcome: 'cancelled' as const };
        const running = await tx.maybeOne(task`${logged(
          sql.fragment`UPDATE tasks SET cancel_requested_at = coalesce(cancel_requested_at, now()), updated_at = now()
            WHERE id = ${id} AND status = ${Status.in_progress} AND ${owned}`,
          { kind: 'cancel_requested' },
        )}`);
        if (running) return { task: running, outcome: 'requested' as const };
        const current = await tx.maybeOne(task`SELECT ${TASK_COLUMNS} FROM tasks WHERE id = ${id} AND ${owned}`);
        if (!current) throw new TaskNotFound(id);
        return { task: current, outcome: 'unchanged' as const };
      }),
    );
  }

  /**
   * A client's retry of a failed or cancelled task: pending again, due now, with a fresh attempt budget
   * (its `errors` history is kept).
   * @throws {TaskNotFound}
   * @throws {TaskConflict} when the task is not failed or cancelled.
   */
  async rerunTask(id: string, tenant?: string): Promise<Task> {
    const set = sql.fragment`
      attempts = 0, run_at = now(), result = NULL, error = NULL, started_at = NULL, finished_at = NULL,
      cancel_requested_at = NULL, worker_id = NULL`;
    const rerun = await translated(() => this.#pool.maybeOne(transition(Transition.rerun, id, set, ownedBy(tenant), { kind: 'rerun' })));
    if (rerun) return rerun;
    const current = await this.getTask(id, tenant);
    throw new TaskConflict(`task ${id} is ${current.status}: only failed or cancelled tasks can be retried`);
  }

  /**
   * Removes a task whatever its status.
   * @returns the status it had (a running task's worker must be told to stop).
   * @throws {TaskNotFound}
   */
  async deleteTask(id: string, tenant?: string): Promise<TaskStatus> {
    const deleted = await translated(() =>
      this.#pool.maybeOne(statusRow`
        WITH gone AS (DELETE FROM tasks WHERE id = ${id} AND ${ownedBy(tenant)} RETURNING id, status),
        history AS (DELETE FROM task_events WHERE task_id IN (SELECT id FROM gone))
        SELECT status FROM gone`),
    );
    if (!deleted) throw new TaskNotFound(id);
    return deleted.status;
  }

  /** The task's history, oldest first. @throws {TaskNotFound} */
  async taskEvents(id: string, tenant?: string): Promise<readonly TaskEvent[]> {
    // Reading the task first keeps another tenant's history out of reach.
    await this.getTask(id, tenant);
    return translated(() =>
      this.#pool.any(eventRow`
        SELECT at, kind, attempt, worker_id AS "workerId", detail FROM task_events WHERE task_id = ${id} ORDER BY id`),
    );
  }

}
