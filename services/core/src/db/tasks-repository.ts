import { type DatabasePool, sql } from 'slonik';
import { Coalescer } from '../coalescer.ts';
import { TaskConflict, TaskNotFound } from '../errors.ts';
import type { Backoff } from '../tasks/backoff.ts';
import type { Task, TaskError, TaskEvent } from '../tasks/model.ts';
import { type TaskStatus, TaskStatus as Status, Transition } from '../tasks/state.ts';
import { translated } from './errors.ts';
import {
  ANY_ROW,
  cancelled,
  type Event,
  eventRow,
  type Fragment,
  hot,
  holds,
  iso,
  LEASE_RELEASED,
  lockedInOrder,
  logged,
  ms,
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

/** A task a worker holds: `leaseToken` fences every write of this attempt. */
export type ClaimedTask = Task & { leaseToken: string };

/** A worker's hold on a running attempt. */
export type Lease = { id: string; leaseToken: string };

type ClaimRequest = { id: string; workerId: string; leaseMs: number };
type Inserted = { task: Task; created: boolean };
type Completion = { id: string; leaseToken: string; result: unknown };

/** A task as {@link TasksRepository.markQueued} left it. */
export type Marked = { task: Task; moved: boolean };

/**
 * How the hot-path writes are grouped: up to `maxBatch` rows per statement, at most `maxInFlight` statements at
 * once per kind, leaving the rest of the pool to everything else.
 */
const GROUPING = Object.freeze({ maxBatch: 500, maxInFlight: 3 });

/**
 * What clients and workers do to tasks (the system's own upkeep is {@link TaskUpkeep}). The methods a client
 * reaches take a `tenant`: a task of another tenant is then treated as missing; system callers (workers, the
 * controller) leave it out and see every task. Methods that change a task's status return `null` when the task
 * was not in a status the change starts from, or when the writer's lease is no longer the task's (someone
 * else changed it first); they do not throw for that. Every method throws {@link DatabaseUnavailable} when
 * PostgreSQL cannot be reached.
 */
export class TasksRepository {
  readonly #pool: DatabasePool;
  // Group commit for the writes every task makes: concurrent calls share one statement (see Coalescer).
  readonly #inserts = new Coalescer<readonly NewTask[], Inserted[]>((lists) => this.#insertLists(lists), { ...GROUPING, sizeOf: (list) => list.length });
  readonly #marks = new Coalescer<readonly Pick<Task, 'id' | 'attempts'>[], readonly Marked[]>((lists) => this.#markQueuedLists(lists), {
    ...GROUPING,
    sizeOf: (list) => list.length,
  });
  readonly #claims = new Coalescer<ClaimRequest, ClaimedTask | null>((requests) => this.#claimMany(requests), GROUPING);
  readonly #completions = new Coalescer<Completion, boolean>((completions) => this.#completeMany(completions), GROUPING);

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
   * Takes a due task for one attempt, with a lease of `leaseMs` held by `workerId`. `null` when it is gone,
   * finished, cancelled, not yet due, or taken by another worker.
   */
  async claimTask(id: string, workerId: string, leaseMs: number): Promise<ClaimedTask | null> {
    return this.#claims.run({ id, workerId, leaseMs });
  }

  /** Claims for one statement per worker (a batch normally comes from one); an id asked twice is claimed once. */
  async #claimMany(requests: readonly ClaimRequest[]): Promise<(ClaimedTask | null)[]> {
    const claimed = new Map<string, ClaimedTask>();
    const groups = Map.groupBy(requests, (r) => `${r.workerId}\u0000${r.leaseMs}`);
    for (const group of groups.values()) {
      const { workerId, leaseMs } = group[0] as ClaimRequest;
      const claimable = sql.fragment`status = ANY(${statuses(Transition.claim.from)}) AND run_at <= now() AND cancel_requested_at IS NULL`;
      const rows = await translated(() =>
        this.#pool.any(hot.claim`${logged(
          sql.fragment`UPDATE tasks
            SET status = ${Transition.claim.to}, updated_at = now(), attempts = attempts + 1, started_at = now(),
                finished_at = NULL, worker_id = ${workerId}, lease_token = gen_random_uuid(), lease_expires_at = now() + ${ms(leaseMs)}
            WHERE id = ANY(${lockedInOrder([...new Set(group.map((r) => r.id))], claimable)}) AND ${claimable}`,
          { kind: 'started' },
          sql.fragment`${TASK_COLUMNS}, lease_token AS "leaseToken"`,
        )}`),
      );
      for (const row of rows) claimed.set(row.id, row);
    }
    // A duplicate delivery of one message must not start the attempt twice: the first request gets it.
    return requests.map((r) => {
      const row = claimed.get(r.id) ?? null;
      claimed.delete(r.id);
      return row;
    });
  }

  /**
   * Extends the leases still held, in one statement. Leases missing from the answer were lost (the task was
   * reaped, cancelled, deleted or taken by a newer attempt): their handlers must stop.
   */
  async heartbeat(leases: readonly Lease[], leaseMs: number): Promise<Map<string, { cancelRequested: boolean }>> {
    if (leases.length === 0) return new Map();
    const rows = await translated(() =>
      this.#pool.any(hot.heartbeat`
        UPDATE tasks AS t SET lease_expires_at = now() + ${ms(leaseMs)}
        FROM unnest(${sql.array(leases.map((l) => l.id), 'uuid')}, ${sql.array(leases.map((l) => l.leaseToken), 'uuid')}) AS l(id, token)
        WHERE t.id = l.id AND t.lease_token = l.token AND t.status = ${Status.in_progress}
          AND t.id = ANY(${lockedInOrder(leases.map((l) => l.id), sql.fragment`status = ${Status.in_progress}`)})
        RETURNING t.id, t.cancel_requested_at IS NOT NULL AS "cancelRequested"`),
    );
    return new Map(rows.map((row) => [row.id, { cancelRequested: row.cancelRequested }]));
  }

  /** Stores the result of the attempt holding `leaseToken`; false when the attempt no longer holds the task. */
  async completeTask(id: string, leaseToken: string, result: unknown): Promise<boolean> {
    return this.#completions.run({ id, leaseToken, result });
  }

  async #completeMany(completions: readonly Completion[]): Promise<boolean[]> {
    const edge = Transition.complete;
    // Only ids come back: the worker needs to know which writes held, not the rows it just wrote.
    const rows = await translated(() =>
      this.#pool.any(hot.complete`${logged(
        sql.fragment`UPDATE tasks AS t
          SET status = ${edge.to}, updated_at = now(), result = c.result, finished_at = now(), lease_token = NULL, lease_expires_at = NULL
          FROM unnest(
            ${sql.array(completions.map((c) => c.id), 'uuid')}, ${sql.array(completions.map((c) => c.leaseToken), 'uuid')},
            ${sql.array(completions.map((c) => JSON.stringify(c.result ?? null)), 'jsonb')}
          ) AS c(id, token, result)
          WHERE t.id = c.id AND t.lease_token = c.token AND t.status = ANY(${statuses(edge.from)})
            AND t.id = ANY(${lockedInOrder(completions.map((c) => c.id), sql.fragment`status = ANY(${statuses(edge.from)})`)})`,
        { kind: 'completed' },
        sql.fragment`id`,
        sql.fragment`t.*`,
      )}`),
    );
    const stored = new Set(rows.map((row) => row.id));
    return completions.map((c) => stored.has(c.id));
  }

  /**
   * Records a failed attempt: final when `retryAt` is null, otherwise the task returns to `pending`, due at
   * `retryAt`, for the relay to publish. The error joins the task's `errors` history either way.
   */
  async failAttempt(id: string, leaseToken: string, error: TaskError, retryAt: Date | null): Promise<Task | null> {
    const entry = { message: error.message, attempt: error.attempt, at: new Date().toISOString() };
    const recorded = sql.fragment`error = ${sql.jsonb(entry)}, errors = errors || ${sql.jsonb([entry])}, ${LEASE_RELEASED}`;
    if (retryAt === null) {
      const failed = { kind: 'failed', detail: sql.jsonb({ message: error.message }) } as const;
      return translated(() => this.#pool.maybeOne(transition(Transition.fail, id, sql.fragment`${recorded}, finished_at = now()`, holds(leaseToken), failed)));
    }
    const set = sql.fragment`${recorded}, run_at = ${retryAt.toISOString()}::timestamptz`;
    const retried = { kind: 'attempt_failed', detail: sql.jsonb({ message: error.message, retryAt: retryAt.toISOString() }) } as const;
    return this.#backToPending(id, leaseToken, recorded, set, retried);
  }

  /**
   * Returns a task to `pending`, unless a cancel was requested while it ran: then it ends `cancelled`, since a
   * pending task with a cancel request would never be claimed again. The return itself refuses a task with a
   * cancel request, so that one arriving after the first check still ends the task cancelled.
   */
  async #backToPending(id: string, leaseToken: string, onCancel: Fragment, set: Fragment, event: Event): Promise<Task | null> {
    return translated(async () => {
      const requested = sql.fragment`${holds(leaseToken)} AND cancel_requested_at IS NOT NULL`;
      const cancelSet = sql.fragment`${onCancel}, finished_at = now()`;
      const cancel = () => this.#pool.maybeOne(transition(Transition.cancelRunning, id, cancelSet, requested, { kind: 'cancelled' }));
      const unrequested = sql.fragment`${holds(leaseToken)} AND cancel_requested_at IS NULL`;
      return (await cancel()) ?? (await this.#pool.maybeOne(transition(Transition.retry, id, set, unrequested, event))) ?? cancel();
    });
  }

  /**
   * Ends the attempt holding `leaseToken` as cancelled, after its handler stopped (or was abandoned).
   * `cancelLatencySeconds` is the time since the cancel was requested.
   */
  async cancelRunning(id: string, leaseToken: string): Promise<(Task & { cancelLatencySeconds: number }) | null> {
    const edge = Transition.cancelRunning;
    return translated(() =>
      this.#pool.maybeOne(cancelled`${logged(
        sql.fragment`UPDATE tasks SET status = ${edge.to}, updated_at = now(), finished_at = now(), ${LEASE_RELEASED}
          WHERE id = ${id} AND status = ANY(${statuses(edge.from)}) AND ${holds(leaseToken)}`,
        { kind: 'cancelled' },
        sql.fragment`${TASK_COLUMNS}, coalesce(extract(epoch FROM now() - cancel_requested_at), 0)::float8 AS "cancelLatencySeconds"`,
      )}`),
    );
  }

  /** Gives an unfinished attempt back without counting it: the task is pending again, due now. */
  async handBack(id: string, leaseToken: string): Promise<Task | null> {
    const set = sql.fragment`attempts = attempts - 1, started_at = NULL, run_at = now(), ${LEASE_RELEASED}`;
    const event = { kind: 'handed_back', detail: sql.fragment`jsonb_build_object('attempt', attempts + 1)` } as const;
    return this.#backToPending(id, leaseToken, LEASE_RELEASED, set, event);
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
