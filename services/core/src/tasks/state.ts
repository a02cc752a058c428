/**
 * The task lifecycle, defined once. Every status change in the system is one of the edges of
 * {@link TRANSITIONS}; the repository builds each conditional UPDATE from this table.
 */
export const TaskStatus = Object.freeze({
  /** Stored in PostgreSQL, waiting for its `runAt` (a delay, a retry's backoff) or for RabbitMQ's confirm. */
  pending: 'pending',
  /** Published: RabbitMQ confirmed the message and holds it until a worker takes it. */
  queued: 'queued',
  /** Claimed by a worker, which is running the handler. */
  in_progress: 'in_progress',
  /** The handler returned; `result` holds its value. Final. */
  completed: 'completed',
  /** The last allowed attempt threw, timed out or lost its worker; `errors` says why. Final unless a client retries it. */
  failed: 'failed',
  /** Cancelled by a client, before or while it ran. Final unless a client retries it. */
  cancelled: 'cancelled',
} as const);

export type TaskStatus = (typeof TaskStatus)[keyof typeof TaskStatus];

export const TASK_STATUSES: readonly TaskStatus[] = Object.freeze(Object.values(TaskStatus));

const { pending, queued, in_progress, completed, failed, cancelled } = TaskStatus;

function deepFreeze<T extends Record<string, readonly unknown[]>>(table: T): T {
  for (const row of Object.values(table)) Object.freeze(row);
  return Object.freeze(table);
}

/** Allowed status changes: `from → to[]`. */
export const TRANSITIONS: Readonly<Record<TaskStatus, readonly TaskStatus[]>> = deepFreeze({
  // A worker may claim a `pending` task: its message can arrive before the publisher records the confirm.
  [pending]: [queued, in_progress, cancelled],
  // `pending` again when RabbitMQ lost the message (queue purged or deleted) and it must be published anew.
  [queued]: [in_progress, cancelled, pending],
  // `pending` when an attempt failed with attempts left, its worker was lost, or a stopping worker handed it back.
  [in_progress]: [completed, failed, cancelled, pending],
  [completed]: [],
  // A client may run a failed or cancelled task again.
  [failed]: [pending],
  [cancelled]: [pending],
});

/** The statuses from which `to` can be reached. */
export function sourcesOf(to: TaskStatus): TaskStatus[] {
  return TASK_STATUSES.filter((from) => TRANSITIONS[from].includes(to));
}

export function canTransition(from: TaskStatus, to: TaskStatus): boolean {
  return TRANSITIONS[from].includes(to);
}

/** Statuses nothing in the system moves a task out of; only a client's retry does (failed, cancelled). */
export const FINISHED_STATUSES: readonly TaskStatus[] = Object.freeze([completed, failed, cancelled]);

export type Edge = Readonly<{ from: readonly TaskStatus[]; to: TaskStatus }>;

function edge(from: TaskStatus[], to: TaskStatus): Edge {
  for (const source of from) {
    if (!canTransition(source, to)) throw new Error(`${source} → ${to} is not in TRANSITIONS`);
  }
  return Object.freeze({ from: Object.freeze(from), to });
}

/** The named status changes the system performs; each is checked against {@link TRANSITIONS} when loaded. */
export const Transition = Object.freeze({
  /** The broker confirmed the task's message. */
  publish: edge([pending], queued),
  /** A worker takes the task. */
  claim: edge([pending, queued], in_progress),
  complete: edge([in_progress], completed),
  /** The last allowed attempt failed (or its worker was lost). */
  fail: edge([in_progress], failed),
  /** An attempt failed with attempts left, its worker was lost, or a stopping worker handed it back: publish again when due. */
  retry: edge([in_progress], pending),
  /** A client cancelled a task no worker runs yet. */
  cancel: edge([pending, queued], cancelled),
  /** The worker running a task stopped it on a client's request. */
  cancelRunning: edge([in_progress], cancelled),
  /** RabbitMQ no longer holds the task's message. */
  republish: edge([queued], pending),
  /** A client runs a failed or cancelled task again. */
  rerun: edge([failed, cancelled], pending),
});
