// The SQL the tasks repository is built from: the task row as the API shows it, typed result rows, and the
// two statement shapes every write goes through (a status compare-and-set, and a history event appended in
// the same statement).
import { sql } from 'slonik';
import { z } from 'zod';
import { TaskEventSchema, TaskSchema } from '../tasks/model.ts';
import { type Edge, type TaskStatus, TaskStatus as Status } from '../tasks/state.ts';

export const TASK_COLUMNS = sql.fragment`
  id, tenant, type, payload, priority, status, attempts, max_attempts AS "maxAttempts", result, error, errors, backoff,
  timeout_ms AS "timeoutMs", idempotency_key AS "idempotencyKey", retention_ms::float8 AS "retentionMs",
  run_at AS "runAt", cancel_requested_at IS NOT NULL AS "cancelRequested", worker_id AS "workerId",
  lease_expires_at AS "leaseExpiresAt", created_at AS "createdAt", updated_at AS "updatedAt",
  started_at AS "startedAt", finished_at AS "finishedAt"`;

const ClaimedRow = TaskSchema.extend({ leaseToken: z.uuid() });
const IdRow = z.object({ id: z.uuid() });
const HeartbeatRow = z.object({ id: z.uuid(), cancelRequested: z.boolean() });

export const task = sql.type(TaskSchema);
export const cancelled = sql.type(TaskSchema.extend({ cancelLatencySeconds: z.number() }));
export const idRow = sql.type(IdRow);
export const statusRow = sql.type(z.object({ status: z.enum(Status) }));

/**
 * The statements every task runs, as named prepared statements: PostgreSQL parses each once per connection
 * instead of once per call (15% of its CPU at 500 single submits/s, when a statement carries few rows). Each
 * call is still planned for its own arguments (see the pool's `plan_cache_mode`). Each name must always carry
 * the same text: the pg driver refuses a name reused for another.
 */
export const hot = Object.freeze({
  insert: sql.prepared('conveyor_insert_tasks', TaskSchema),
  markQueued: sql.prepared('conveyor_mark_queued', TaskSchema),
  read: sql.prepared('conveyor_read_tasks', TaskSchema),
  readOwned: sql.prepared('conveyor_read_owned_task', TaskSchema),
  readAny: sql.prepared('conveyor_read_any_task', TaskSchema),
  claim: sql.prepared('conveyor_claim_tasks', ClaimedRow),
  heartbeat: sql.prepared('conveyor_heartbeat', HeartbeatRow),
  complete: sql.prepared('conveyor_complete_tasks', IdRow),
});
export const countRow = sql.type(z.object({ count: z.number() }));
export const eventRow = sql.type(TaskEventSchema);
export const backlogRow = sql.type(z.object({ pending: z.number(), queued: z.number(), inProgress: z.number() }));
export const workerRow = sql.type(z.object({ workerId: z.string(), count: z.number() }));
export const statusCountRow = sql.type(z.object({ status: z.string(), count: z.number() }));
export const outboxRow = sql.type(z.object({ due: z.number(), oldestSeconds: z.number() }));
const QueuedSinceRow = z.object({ id: z.uuid(), updatedAt: z.string() });
export type QueuedSince = z.infer<typeof QueuedSinceRow>;
export const queuedSinceRow = sql.type(QueuedSinceRow);

export const statuses = (list: readonly TaskStatus[]) => sql.array([...list], sql.fragment`task_status[]`);
export const ms = (value: number) => sql.fragment`make_interval(secs => ${value / 1000})`;

export type Fragment = ReturnType<typeof sql.fragment>;

/** A timestamp in the ISO form the API speaks (UTC, `Z`), for timestamps written inside jsonb. */
export const iso = (timestamp: Fragment) => sql.fragment`to_char(${timestamp} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;
export const UTC_NOW = iso(sql.fragment`now()`);

/** How long the relay leaves a just-stored task to the submit that is publishing it. */
export const RELAY_SETTLE_MS = 2_000;

/** What happened to a task, as its history (`task_events`) records it. */
export type EventKind =
  | 'submitted'
  | 'published'
  | 'started'
  | 'completed'
  | 'attempt_failed'
  | 'failed'
  | 'cancel_requested'
  | 'cancelled'
  | 'handed_back'
  | 'worker_lost'
  | 'republished'
  | 'rerun';

export type Event = { kind: EventKind; detail?: Fragment | ReturnType<typeof sql.jsonb> };

/**
 * Runs a statement that writes task rows (`… RETURNING *`) and appends one event per written row in the same
 * statement, so a task's history can never disagree with it. `detail` may read the written row's columns.
 */
export function logged(statement: Fragment, event: Event, columns: Fragment = TASK_COLUMNS, returning: Fragment = sql.fragment`*`): Fragment {
  return sql.fragment`
    WITH changed AS (${statement} RETURNING ${returning}),
    logged AS (
      INSERT INTO task_events (task_id, kind, attempt, worker_id, detail)
      SELECT id, ${event.kind}, attempts, worker_id, ${event.detail ?? sql.fragment`'{}'::jsonb`} FROM changed
    )
    SELECT ${columns} FROM changed`;
}

/** The compare-and-set every status change goes through: it applies only while the row is in one of `edge.from`. */
export function transition(edge: Edge, id: string, set: Fragment, guard: Fragment, event: Event) {
  return task`${logged(
    sql.fragment`UPDATE tasks SET status = ${edge.to}, updated_at = now(), ${set}
      WHERE id = ${id} AND status = ANY(${statuses(edge.from)}) AND ${guard}`,
    event,
  )}`;
}

export const ANY_ROW = sql.fragment`TRUE`;

/**
 * The ids among `ids` whose rows match `where`, locked in id order, for `id = ANY(…)`. Every statement that
 * writes many task rows and may wait for a row lock takes its locks through this, so two of them never wait
 * for each other in a cycle: a deadlock, which PostgreSQL breaks only after `deadlock_timeout` (a second) by
 * failing one of them. `ARRAY(…)` runs the locking subquery once, before the write.
 */
export const lockedInOrder = (ids: readonly string[], where: Fragment = ANY_ROW) =>
  sql.fragment`ARRAY(SELECT id FROM tasks WHERE id = ANY(${sql.array([...ids], 'uuid')}) AND ${where} ORDER BY id FOR UPDATE)`;

export const holds = (leaseToken: string) => sql.fragment`lease_token = ${leaseToken}`;
export const LEASE_RELEASED = sql.fragment`lease_token = NULL, lease_expires_at = NULL`;

/**
 * How the hot-path writes are grouped: up to `maxBatch` rows per statement, at most `maxInFlight` statements at
 * once per kind, leaving the rest of the pool to everything else.
 */
export const GROUPING = Object.freeze({ maxBatch: 500, maxInFlight: 3 });
