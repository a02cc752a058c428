import { hostname } from 'node:os';
import { z } from 'zod';
import { ConfigError } from './errors.ts';

/** Bounds that protect the service from its own configuration. */
export const LIMITS = Object.freeze({
  maxConcurrency: 1000,
  maxPort: 65535,
  minLeaseMs: 1_000,
  maxLeaseMs: 3_600_000,
  maxRetentionMs: 100 * 365 * 86_400_000,
});

const DURATION = /^(\d+)(ms|s|m|h|d)?$/;
const UNIT_MS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** A duration: whole milliseconds, or a number with a unit (`30s`, `15m`, `7d`). */
const duration = z
  .string()
  .regex(DURATION, 'must be a duration such as 30000, 30s, 15m or 7d')
  .transform((text) => {
    const [, amount, unit = 'ms'] = DURATION.exec(text) as RegExpExecArray;
    return Number(amount) * (UNIT_MS[unit] as number);
  });

const integer = (min: number, max: number) =>
  z
    .string()
    .regex(/^\d+$/, 'must be a whole number')
    .transform(Number)
    .pipe(z.number().int().min(min).max(max));

const envSchema = z.object({
  DATABASE_URL: z.url({ protocol: /^postgres(ql)?$/, error: 'must be a postgres:// URL' }).default('postgres://postgres@127.0.0.1:5432/conveyor'),
  AMQP_URL: z.url({ protocol: /^amqps?$/, error: 'must be an amqp:// or amqps:// URL' }).default('amqp://guest:guest@127.0.0.1:5672'),
  HOST: z.string().min(1).default('0.0.0.0'),
  PORT: integer(0, LIMITS.maxPort).default(8000),
  METRICS_PORT: integer(0, LIMITS.maxPort).default(9091),
  TASKS_QUEUE: z
    .string()
    .regex(/^[A-Za-z0-9._:-]{1,200}$/, 'letters, digits and . _ : - only, at most 200 characters')
    .default('tasks'),
  WORKER_CONCURRENCY: integer(1, LIMITS.maxConcurrency).default(8),
  WORKER_ID: z.string().min(1).optional(),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  SHUTDOWN_TIMEOUT_MS: integer(0, 3_600_000).default(25_000),
  PUBLISH_TIMEOUT_MS: integer(1, 60_000).default(5_000),
  DATABASE_POOL_SIZE: integer(1, 200).default(10),
  TASK_LEASE_MS: integer(LIMITS.minLeaseMs, LIMITS.maxLeaseMs).default(30_000),
  TASK_RETENTION: duration.pipe(z.number().max(LIMITS.maxRetentionMs, 'must be at most 100 years')).default(7 * 86_400_000),
  RETENTION_INTERVAL_MS: integer(1_000, 86_400_000).default(60_000),
  RELAY_INTERVAL_MS: integer(10, 60_000).default(1_000),
  REAPER_INTERVAL_MS: integer(100, 600_000).default(5_000),
  CANCEL_GRACE_MS: integer(0, 600_000).default(5_000),
  QUEUED_RECONCILE_MS: integer(1_000, 86_400_000).default(60_000),
  POD_NAME: z.string().min(1).optional(),
  POD_NAMESPACE: z.string().min(1).default('default'),
  CONTROLLER_LEASE_NAME: z.string().min(1).default('conveyor-controller'),
  CONTROLLER_LEASE_MS: integer(3_000, 600_000).default(15_000),
  TASK_SYNC_INTERVAL_MS: integer(100, 600_000).default(2_000),
});

export type Config = Readonly<{
  databaseUrl: string;
  amqpUrl: string;
  host: string;
  port: number;
  /** Where a worker (or the controller) serves /metrics, /healthz and /readyz. */
  metricsPort: number;
  tasksQueue: string;
  workerConcurrency: number;
  workerId: string;
  logLevel: z.infer<typeof envSchema>['LOG_LEVEL'];
  /** How long a graceful stop may take before in-flight work is handed back. */
  shutdownTimeoutMs: number;
  /** How long a submit waits for the broker's confirm before answering with a `pending` task. */
  publishTimeoutMs: number;
  databasePoolSize: number;
  /** How long a worker's claim on a task lasts without a heartbeat; heartbeats come every third of it. */
  taskLeaseMs: number;
  /** How long finished tasks are kept; 0 keeps them forever. */
  taskRetentionMs: number;
  retentionIntervalMs: number;
  /** How often the outbox relay looks for due `pending` tasks (it is also woken by every broker reconnect). */
  relayIntervalMs: number;
  /** How often expired leases are reaped and lost messages looked for. */
  reaperIntervalMs: number;
  /** How long a cancelled handler may ignore its abort signal before the worker abandons it. */
  cancelGraceMs: number;
  /** A task `queued` this long while RabbitMQ holds fewer messages than there are queued tasks is published again. */
  queuedReconcileMs: number;
  /** The controller's identity in leader election (the pod name in a cluster). */
  podName: string;
  /** The namespace the controller watches and holds its Lease in. */
  podNamespace: string;
  controllerLeaseName: string;
  controllerLeaseMs: number;
  /** How often the controller refreshes a Task resource's status from PostgreSQL while the task runs. */
  taskSyncIntervalMs: number;
}>;

/**
 * Reads the configuration once, at start.
 * @throws {ConfigError} listing every invalid variable at once.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  // An empty variable means "unset", as in most shells' `VAR= cmd`.
  const present = Object.fromEntries(Object.entries(env).filter(([, value]) => value !== ''));
  const parsed = envSchema.safeParse(present);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`);
    throw new ConfigError(`invalid configuration: ${problems.join('; ')}`);
  }
  const e = parsed.data;
  return Object.freeze({
    databaseUrl: e.DATABASE_URL,
    amqpUrl: e.AMQP_URL,
    host: e.HOST,
    port: e.PORT,
    metricsPort: e.METRICS_PORT,
    tasksQueue: e.TASKS_QUEUE,
    workerConcurrency: e.WORKER_CONCURRENCY,
    workerId: e.WORKER_ID ?? `${hostname()}-${process.pid}`,
    logLevel: e.LOG_LEVEL,
    shutdownTimeoutMs: e.SHUTDOWN_TIMEOUT_MS,
    publishTimeoutMs: e.PUBLISH_TIMEOUT_MS,
    databasePoolSize: e.DATABASE_POOL_SIZE,
    taskLeaseMs: e.TASK_LEASE_MS,
    taskRetentionMs: e.TASK_RETENTION,
    retentionIntervalMs: e.RETENTION_INTERVAL_MS,
    relayIntervalMs: e.RELAY_INTERVAL_MS,
    reaperIntervalMs: e.REAPER_INTERVAL_MS,
    cancelGraceMs: e.CANCEL_GRACE_MS,
    queuedReconcileMs: e.QUEUED_RECONCILE_MS,
    podName: e.POD_NAME ?? `${hostname()}-${process.pid}`,
    podNamespace: e.POD_NAMESPACE,
    controllerLeaseName: e.CONTROLLER_LEASE_NAME,
    controllerLeaseMs: e.CONTROLLER_LEASE_MS,
    taskSyncIntervalMs: e.TASK_SYNC_INTERVAL_MS,
  });
}
