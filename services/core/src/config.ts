import { hostname } from 'node:os';
import { z } from 'zod';
import { API_KEY_PATTERN, DEFAULT_TENANT, TenantSchema } from './auth/api-key.ts';
import { ConfigError } from './errors.ts';

/** Bounds that protect the service from its own configuration. */
export const LIMITS = Object.freeze({
  maxConcurrency: 1000,
  maxPort: 65535,
  minLeaseMs: 1_000,
  maxLeaseMs: 3_600_000,
  maxRetentionMs: 100 * 365 * 86_400_000,
  maxBodyBytes: 100 * 1024 * 1024,
});

/** Hosts that only this machine can reach: the only ones an API without authentication may listen on. */
const LOOPBACK_HOSTS = new Set(['127.0.0.1', '::1', 'localhost']);

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
  HOST: z.string().min(1).optional(),
  AUTH_MODE: z.enum(['apikey', 'none']).default('apikey'),
  AUTH_BOOTSTRAP_KEY: z.string().regex(API_KEY_PATTERN, 'must be a Conveyor API key (cvy_ and 43 base64url characters)').optional(),
  AUTH_BOOTSTRAP_TENANT: TenantSchema.default(DEFAULT_TENANT),
  AUTH_CACHE_MS: integer(0, 300_000).default(5_000),
  RATE_LIMIT_PER_SECOND: integer(0, 1_000_000).default(100),
  RATE_LIMIT_BURST: integer(1, 1_000_000).default(200),
  BODY_LIMIT_BYTES: integer(1_024, LIMITS.maxBodyBytes).default(1024 * 1024),
  HTTP_HEADERS_TIMEOUT_MS: integer(1_000, 600_000).default(10_000),
  HTTP_REQUEST_TIMEOUT_MS: integer(1_000, 3_600_000).default(30_000),
  PUBLIC_DOCS: z.enum(['true', 'false']).default('false'),
  PUBLIC_METRICS: z.enum(['true', 'false']).default('false'),
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
  /** Where the API listens: 0.0.0.0 by default, loopback only (and by default) when authentication is off. */
  host: string;
  port: number;
  /** `apikey`: every request needs `Authorization: Bearer <key>`; `none`: one implicit tenant with every scope. */
  authMode: 'apikey' | 'none';
  /** A key the API makes sure exists at start (with every scope), so that a fresh install can create the others. */
  authBootstrapKey: string | undefined;
  authBootstrapTenant: string;
  /** How long an API process trusts what it looked up about a key; a revocation elsewhere takes this long to apply. */
  authCacheMs: number;
  /** Each key's sustained request rate and burst (token bucket, per API process); 0 turns the limit off. */
  rateLimitPerSecond: number;
  rateLimitBurst: number;
  /** The largest request body accepted (413 beyond). */
  bodyLimitBytes: number;
  /** How long a client may take to send the request headers, and the whole request; slower ones get 408 and are cut off. */
  httpHeadersTimeoutMs: number;
  httpRequestTimeoutMs: number;
  /** Serve `/docs` and `/openapi.json` (else they need a key), and `/metrics` (else it needs an `admin` key), to anyone. */
  publicDocs: boolean;
  publicMetrics: boolean;
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
  const host = e.HOST ?? (e.AUTH_MODE === 'none' ? '127.0.0.1' : '0.0.0.0');
  if (e.HTTP_REQUEST_TIMEOUT_MS < e.HTTP_HEADERS_TIMEOUT_MS) {
    throw new ConfigError('invalid configuration: HTTP_REQUEST_TIMEOUT_MS: must be at least HTTP_HEADERS_TIMEOUT_MS (the whole request includes its headers)');
  }
  if (e.AUTH_MODE === 'none' && !LOOPBACK_HOSTS.has(host)) {
    throw new ConfigError(
      `invalid configuration: HOST: AUTH_MODE=none lets anyone who connects read and run every task, so the API listens on loopback only; unset HOST, or set AUTH_MODE=apikey to listen on ${host}`,
    );
  }
  return Object.freeze({
    databaseUrl: e.DATABASE_URL,
    amqpUrl: e.AMQP_URL,
    host,
    port: e.PORT,
    authMode: e.AUTH_MODE,
    authBootstrapKey: e.AUTH_BOOTSTRAP_KEY,
    authBootstrapTenant: e.AUTH_BOOTSTRAP_TENANT,
    authCacheMs: e.AUTH_CACHE_MS,
    rateLimitPerSecond: e.RATE_LIMIT_PER_SECOND,
    rateLimitBurst: e.RATE_LIMIT_BURST,
    bodyLimitBytes: e.BODY_LIMIT_BYTES,
    httpHeadersTimeoutMs: e.HTTP_HEADERS_TIMEOUT_MS,
    httpRequestTimeoutMs: e.HTTP_REQUEST_TIMEOUT_MS,
    publicDocs: e.PUBLIC_DOCS === 'true',
    publicMetrics: e.PUBLIC_METRICS === 'true',
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
