import { type DatabasePool, sql } from 'slonik';
import type { Task } from '../tasks/model.ts';
import { type Edge, FINISHED_STATUSES, type TaskStatus, TaskStatus as Status, Transition } from '../tasks/state.ts';
import { translated } from './errors.ts';
import {
  backlogRow,
  countRow,
  type Fragment,
  idRow,
  LEASE_RELEASED,
  lockedInOrder,
  logged,
  ms,
  outboxRow,
  type QueuedSince,
  queuedSinceRow,
  RELAY_SETTLE_MS,
  statusCountRow,
  statuses,
  task,
  TASK_COLUMNS,
  UTC_NOW,
  workerRow,
} from './task-sql.ts';

/**
 * The system's own work on the `tasks` table, apart from any one client or worker: the outbox relay, the lease
 * reaper, lost-message reconciliation, retention, and the counts behind metrics and autoscaling. Every method
 * is safe to run from many processes at once, and throws {@link DatabaseUnavailable} when PostgreSQL cannot be
 * reached.
 */
export class TaskUpkeep {
  readonly #pool: DatabasePool;

  constructor(pool: DatabasePool) {
    this.#pool = pool;
  }

  /**
   * The outbox relay's step: locks up to `limit` due `pending` tasks (highest priority, then oldest, first;
   * rows another relay holds are skipped), hands them to `publish`, and marks queued those it confirms.
   * A task made pending for immediate publishing (a fresh submit, a hand-back) is left alone for a moment, while
   * its publisher is at it; one due later (a retry, a delayed task) is taken as soon as it is due. A rare
   * duplicate publish is harmless: the worker's claim drops it.
   * @returns how many tasks were locked (a full batch means more may be due).
   */
  async relayDuePending(limit: number, publish: (tasks: readonly Task[]) => Promise<readonly string[]>): Promise<number> {
    return translated(() =>
      this.#pool.transaction(async (tx) => {
        const due = await tx.any(task`
          SELECT ${TASK_COLUMNS} FROM tasks
          WHERE status = ${Status.pending} AND run_at <= now()
            AND (run_at > updated_at OR updated_at <= now() - ${ms(RELAY_SETTLE_MS)})
          ORDER BY priority DESC, run_at, id
          LIMIT ${limit}
          FOR UPDATE SKIP LOCKED`);
        if (due.length === 0) return 0;
        const confirmed = await publish(due);
        if (confirmed.length > 0) {
          await tx.query(idRow`${logged(
            sql.fragment`UPDATE tasks SET status = ${Transition.publish.to}, updated_at = now()
              WHERE id = ANY(${sql.array([...confirmed], 'uuid')}) AND status = ANY(${statuses(Transition.publish.from)})`,
            { kind: 'published', detail: sql.fragment`'{"by": "relay"}'::jsonb` },
            sql.fragment`id`,
          )}`);
        }
        return due.length;
      }),
    );
  }

  /**
   * Settles running tasks whose lease expired (their worker died, hung or lost its network): cancelled when a
   * cancel was requested, otherwise a failed attempt with error `worker lost`, retried when attempts are left.
   * Safe to run from many processes at once: each row is settled by exactly one of them.
   */
  async reapExpiredLeases(limit: number): Promise<readonly Task[]> {
    const lost = sql.fragment`jsonb_build_object('message', 'worker lost', 'attempt', attempts, 'at', ${UTC_NOW})`;
    const recorded = sql.fragment`error = ${lost}, errors = errors || jsonb_build_array(${lost}), ${LEASE_RELEASED}`;
    const edges: [Edge, Fragment, Fragment][] = [
      [Transition.cancelRunning, sql.fragment`finished_at = now(), ${LEASE_RELEASED}`, sql.fragment`cancel_requested_at IS NOT NULL`],
      [Transition.retry, sql.fragment`${recorded}, run_at = now()`, sql.fragment`cancel_requested_at IS NULL AND attempts < max_attempts`],
      [Transition.fail, sql.fragment`${recorded}, finished_at = now()`, sql.fragment`cancel_requested_at IS NULL AND attempts >= max_attempts`],
    ];
    return translated(() =>
      this.#pool.transaction(async (tx) => {
        // The rows are taken once, and each edge settles its share of exactly those: a locking subquery per
        // edge would take a different set each time, and could leave a taken row to no edge.
        const taken = await tx.anyFirst(idRow`
          SELECT id FROM tasks WHERE status = ${Status.in_progress} AND lease_expires_at < now()
          ORDER BY lease_expires_at LIMIT ${limit} FOR UPDATE SKIP LOCKED`);
        if (taken.length === 0) return [];
        const expired = sql.fragment`id = ANY(${sql.array([...taken], 'uuid')})`;
        const settled: Task[] = [];
        for (const [edge, set, guard] of edges) {
          settled.push(
            ...(await tx.any(task`${logged(
              sql.fragment`UPDATE tasks SET status = ${edge.to}, updated_at = now(), ${set}
                WHERE status = ANY(${statuses(edge.from)}) AND ${guard} AND ${expired}`,
              { kind: 'worker_lost', detail: sql.fragment`jsonb_build_object('outcome', status)` },
            )}`)),
          );
        }
        return settled;
      }),
    );
  }

  /** How many tasks wait or run: the autoscaler's view of the backlog (pending counts only when due). */
  async backlog(): Promise<{ pending: number; queued: number; inProgress: number }> {
    // One count per status, so that each reads its status's partial index rather than the whole table.
    const row = await translated(() =>
      this.#pool.one(backlogRow`
        SELECT (SELECT count(*) FROM tasks WHERE status = ${Status.pending} AND run_at <= now())::int AS pending,
               (SELECT count(*) FROM tasks WHERE status = ${Status.queued})::int AS queued,
               (SELECT count(*) FROM tasks WHERE status = ${Status.in_progress})::int AS "inProgress"`),
    );
    return row;
  }

  /** Counts for the metrics: tasks by status, and the outbox (due pending tasks and the oldest one's age). */
  async gauges(): Promise<{ byStatus: Map<string, number>; duePending: number; oldestDueSeconds: number }> {
    return translated(async () => {
      const rows = await this.#pool.any(statusCountRow`SELECT status::text, count(*)::int AS count FROM tasks GROUP BY status`);
      const outbox = await this.#pool.one(outboxRow`
        SELECT count(*)::int AS due, coalesce(extract(epoch FROM now() - min(run_at)), 0)::float8 AS "oldestSeconds"
        FROM tasks WHERE status = ${Status.pending} AND run_at <= now()`);
      return { byStatus: new Map(rows.map((r) => [r.status, r.count])), duePending: outbox.due, oldestDueSeconds: outbox.oldestSeconds };
    });
  }

  /** Running tasks per worker id, for scale-in to remove idle workers first. */
  async runningByWorker(): Promise<Map<string, number>> {
    const rows = await translated(() =>
      this.#pool.any(workerRow`
        SELECT worker_id AS "workerId", count(*)::int AS count FROM tasks
        WHERE status = ${Status.in_progress} AND worker_id IS NOT NULL GROUP BY worker_id`),
    );
    return new Map(rows.map((row) => [row.workerId, row.count]));
  }

  async countByStatus(status: TaskStatus): Promise<number> {
    return translated(() => this.#pool.oneFirst(countRow`SELECT count(*)::int AS count FROM tasks WHERE status = ${status}`));
  }

  /**
   * Up to `limit` tasks `queued` for longer than `olderThanMs`, the longest queued first, each with its
   * `updated_at` as PostgreSQL's text (exact to the microsecond), so that {@link republishQueued} can tell
   * whether the task moved since.
   */
  async staleQueued(olderThanMs: number, limit: number): Promise<readonly QueuedSince[]> {
    return translated(() =>
      this.#pool.any(queuedSinceRow`
        SELECT id, updated_at::text AS "updatedAt" FROM tasks
        WHERE status = ${Status.queued} AND updated_at < now() - ${ms(olderThanMs)}
        ORDER BY updated_at LIMIT ${limit}`),
    );
  }

  /**
   * Puts these tasks back to `pending`, for the relay to publish again: each only while it is still `queued`
   * and unchanged since it was seen (same `updated_at`). @returns the ids it moved.
   */
  async republishQueued(seen: readonly QueuedSince[]): Promise<readonly string[]> {
    if (seen.length === 0) return [];
    const ids = sql.array(seen.map((t) => t.id), 'uuid');
    const since = sql.array(seen.map((t) => t.updatedAt), 'text');
    const unchanged = sql.fragment`(id, updated_at) IN (SELECT id, since::timestamptz FROM unnest(${ids}, ${since}) AS seen (id, since))
      AND status = ANY(${statuses(Transition.republish.from)})`;
    const rows = await translated(() =>
      this.#pool.any(idRow`${logged(
        sql.fragment`UPDATE tasks SET status = ${Transition.republish.to}, updated_at = now(), run_at = now()
          WHERE id = ANY(${lockedInOrder(seen.map((t) => t.id), unchanged)}) AND ${unchanged}`,
        { kind: 'republished' },
        sql.fragment`id`,
      )}`),
    );
    return rows.map((row) => row.id);
  }

  /**
   * Deletes up to `limit` finished tasks older than their retention (the task's own, else `defaultRetentionMs`;
   * 0 keeps forever). Small batches keep every lock short.
   */
  async deleteExpiredFinished(defaultRetentionMs: number, limit: number): Promise<number> {
    const retention = sql.fragment`coalesce(retention_ms, ${defaultRetentionMs})`;
    const rows = await translated(() =>
      this.#pool.any(idRow`
        WITH gone AS (DELETE FROM tasks WHERE id = ANY(ARRAY(
          SELECT id FROM tasks
          WHERE status = ANY(${statuses(FINISHED_STATUSES)}) AND ${retention} > 0
            AND finished_at < now() - make_interval(secs => ${retention} / 1000.0)
          LIMIT ${limit} FOR UPDATE SKIP LOCKED))
        RETURNING id),
        history AS (DELETE FROM task_events WHERE task_id IN (SELECT id FROM gone))
        SELECT id FROM gone`),
    );
    return rows.length;
  }
}
