import { type DatabasePool, sql } from 'slonik';
import { Coalescer } from '../coalescer.ts';
import type { Task, TaskError } from '../tasks/model.ts';
import { TaskStatus as Status, Transition } from '../tasks/state.ts';
import { translated } from './errors.ts';
import {
  cancelled,
  type Event,
  type Fragment,
  GROUPING,
  hot,
  holds,
  LEASE_RELEASED,
  lockedInOrder,
  logged,
  ms,
  statuses,
  TASK_COLUMNS,
  transition,
} from './task-sql.ts';

/** A task a worker holds: `leaseToken` fences every write of this attempt. */
export type ClaimedTask = Task & { leaseToken: string };

/** A worker's hold on a running attempt. */
export type Lease = { id: string; leaseToken: string };

type ClaimRequest = { id: string; workerId: string; leaseMs: number };
type Completion = { id: string; leaseToken: string; result: unknown };

/**
 * What a worker does to the tasks it runs: claim one for an attempt under a lease, keep the lease, and record how
 * the attempt ended. Every write after the claim is fenced by the attempt's lease token: it returns `null` (or
 * `false`) when the attempt no longer holds the task (it was reaped, cancelled, deleted or taken by a newer
 * attempt), and does not throw for that. Every method throws {@link DatabaseUnavailable} when PostgreSQL cannot
 * be reached.
 */
export class AttemptsRepository {
  readonly #pool: DatabasePool;
  // Group commit for the writes every attempt makes: concurrent calls share one statement (see Coalescer).
  readonly #claims = new Coalescer<ClaimRequest, ClaimedTask | null>((requests) => this.#claimMany(requests), GROUPING);
  readonly #completions = new Coalescer<Completion, boolean>((completions) => this.#completeMany(completions), GROUPING);

  constructor(pool: DatabasePool) {
    this.#pool = pool;
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
}
