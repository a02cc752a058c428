import { hostname } from 'node:os';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { type Config, LIMITS, loadConfig } from '../../services/core/src/config.ts';
import { ConfigError } from '../../services/core/src/errors.ts';

const test = suite('core: config');

function configError(env: Record<string, string>): ConfigError {
  try {
    loadConfig(env);
  } catch (error) {
    assert.instance(error, ConfigError);
    return error as ConfigError;
  }
  assert.unreachable(`loadConfig accepted ${JSON.stringify(env)}`);
  throw new Error('unreachable');
}

test('defaults: an empty environment gives the documented values', () => {
  const config = loadConfig({});
  assert.equal(config, {
    databaseUrl: 'postgres://postgres@127.0.0.1:5432/conveyor',
    amqpUrl: 'amqp://guest:guest@127.0.0.1:5672',
    host: '0.0.0.0',
    port: 8000,
    authMode: 'apikey',
    authBootstrapKey: undefined,
    authBootstrapTenant: 'default',
    authCacheMs: 5_000,
    rateLimitPerSecond: 100,
    rateLimitBurst: 200,
    bodyLimitBytes: 1024 * 1024,
    httpHeadersTimeoutMs: 10_000,
    httpRequestTimeoutMs: 30_000,
    publicDocs: false,
    publicMetrics: false,
    metricsPort: 9091,
    tasksQueue: 'tasks',
    workerConcurrency: 8,
    workerId: `${hostname()}-${process.pid}`,
    logLevel: 'info',
    shutdownTimeoutMs: 25_000,
    publishTimeoutMs: 5_000,
    databasePoolSize: 10,
    taskLeaseMs: 30_000,
    taskRetentionMs: 7 * 86_400_000,
    retentionIntervalMs: 60_000,
    relayIntervalMs: 1_000,
    reaperIntervalMs: 5_000,
    cancelGraceMs: 5_000,
    queuedReconcileMs: 60_000,
    podName: `${hostname()}-${process.pid}`,
    podNamespace: 'default',
    controllerLeaseName: 'conveyor-controller',
    controllerLeaseMs: 15_000,
    taskSyncIntervalMs: 2_000,
  } satisfies Config);
});

test('given values are parsed into their types', () => {
  const config = loadConfig({
    DATABASE_URL: 'postgres://app:secret@db.internal:6543/tasks_db',
    AMQP_URL: 'amqp://user:pw@mq.internal:5673/vhost',
    HOST: '127.0.0.1',
    PORT: '9000',
    AUTH_MODE: 'none',
    AUTH_BOOTSTRAP_KEY: 'cvy_' + 'A'.repeat(43),
    AUTH_BOOTSTRAP_TENANT: 'acme',
    AUTH_CACHE_MS: '0',
    RATE_LIMIT_PER_SECOND: '0',
    RATE_LIMIT_BURST: '5',
    BODY_LIMIT_BYTES: '2048',
    HTTP_HEADERS_TIMEOUT_MS: '2000',
    HTTP_REQUEST_TIMEOUT_MS: '3000',
    PUBLIC_DOCS: 'true',
    PUBLIC_METRICS: 'true',
    METRICS_PORT: '9092',
    TASKS_QUEUE: 'conveyor.tasks-v2',
    WORKER_CONCURRENCY: '3',
    WORKER_ID: 'worker-a',
    LOG_LEVEL: 'debug',
    SHUTDOWN_TIMEOUT_MS: '1000',
    PUBLISH_TIMEOUT_MS: '250',
    DATABASE_POOL_SIZE: '4',
    TASK_LEASE_MS: '12000',
    TASK_RETENTION: '36h',
    RETENTION_INTERVAL_MS: '5000',
    RELAY_INTERVAL_MS: '50',
    REAPER_INTERVAL_MS: '700',
    CANCEL_GRACE_MS: '0',
    QUEUED_RECONCILE_MS: '2000',
    POD_NAME: 'conveyor-controller-7d9f-abcde',
    POD_NAMESPACE: 'conveyor',
    CONTROLLER_LEASE_NAME: 'leader',
    CONTROLLER_LEASE_MS: '9000',
    TASK_SYNC_INTERVAL_MS: '500',
  });
  assert.equal(config, {
    databaseUrl: 'postgres://app:secret@db.internal:6543/tasks_db',
    amqpUrl: 'amqp://user:pw@mq.internal:5673/vhost',
    host: '127.0.0.1',
    port: 9000,
    authMode: 'none',
    authBootstrapKey: 'cvy_' + 'A'.repeat(43),
    authBootstrapTenant: 'acme',
    authCacheMs: 0,
    rateLimitPerSecond: 0,
    rateLimitBurst: 5,
    bodyLimitBytes: 2048,
    httpHeadersTimeoutMs: 2_000,
    httpRequestTimeoutMs: 3_000,
    publicDocs: true,
    publicMetrics: true,
    metricsPort: 9092,
    tasksQueue: 'conveyor.tasks-v2',
    workerConcurrency: 3,
    workerId: 'worker-a',
    logLevel: 'debug',
    shutdownTimeoutMs: 1000,
    publishTimeoutMs: 250,
    databasePoolSize: 4,
    taskLeaseMs: 12_000,
    taskRetentionMs: 36 * 3_600_000,
    retentionIntervalMs: 5_000,
    relayIntervalMs: 50,
    reaperIntervalMs: 700,
    cancelGraceMs: 0,
    queuedReconcileMs: 2_000,
    podName: 'conveyor-controller-7d9f-abcde',
    podNamespace: 'conveyor',
    controllerLeaseName: 'leader',
    controllerLeaseMs: 9_000,
    taskSyncIntervalMs: 500,
  });
});

test('bounds are inclusive: PORT 0 and 65535, WORKER_CONCURRENCY 1 and LIMITS.maxConcurrency', () => {
  assert.is(loadConfig({ PORT: '0' }).port, 0);
  assert.is(loadConfig({ PORT: String(LIMITS.maxPort) }).port, 65535);
  assert.is(loadConfig({ WORKER_CONCURRENCY: '1' }).workerConcurrency, 1);
  assert.is(loadConfig({ WORKER_CONCURRENCY: String(LIMITS.maxConcurrency) }).workerConcurrency, LIMITS.maxConcurrency);
  configError({ PORT: '65536' });
  configError({ PORT: '-1' });
  configError({ PORT: '80.5' });
  configError({ WORKER_CONCURRENCY: '0' });
  configError({ WORKER_CONCURRENCY: String(LIMITS.maxConcurrency + 1) });
});

test('AUTH_MODE=none listens on loopback: by default, and it refuses any other HOST', () => {
  assert.is(loadConfig({ AUTH_MODE: 'none' }).host, '127.0.0.1');
  assert.is(loadConfig({ AUTH_MODE: 'none', HOST: '::1' }).host, '::1');
  assert.is(loadConfig({ AUTH_MODE: 'apikey' }).host, '0.0.0.0');
  for (const host of ['0.0.0.0', '::', '10.0.0.7']) {
    assert.match(configError({ AUTH_MODE: 'none', HOST: host }).message, /HOST: AUTH_MODE=none/, host);
  }
  assert.match(configError({ AUTH_MODE: 'open' }).message, /AUTH_MODE/);
  assert.match(configError({ AUTH_BOOTSTRAP_KEY: 'hunter2' }).message, /AUTH_BOOTSTRAP_KEY/);
  assert.not.match(configError({ AUTH_BOOTSTRAP_KEY: 'hunter2' }).message, /hunter2/, 'the rejected secret is not echoed');
  assert.match(configError({ AUTH_BOOTSTRAP_TENANT: 'Acme Corp' }).message, /AUTH_BOOTSTRAP_TENANT/);
});

test('TASK_RETENTION takes milliseconds or a number with a unit; 0 keeps tasks forever', () => {
  const retention = (value: string) => loadConfig({ TASK_RETENTION: value }).taskRetentionMs;
  assert.is(retention('0'), 0);
  assert.is(retention('1500'), 1_500);
  assert.is(retention('250ms'), 250);
  assert.is(retention('30s'), 30_000);
  assert.is(retention('15m'), 900_000);
  assert.is(retention('2h'), 7_200_000);
  assert.is(retention('7d'), 604_800_000);
  assert.is(retention(`${100 * 365}d`), LIMITS.maxRetentionMs, 'up to 100 years');
  assert.match(configError({ TASK_RETENTION: `${100 * 365 + 1}d` }).message, /TASK_RETENTION/);
  for (const value of ['7 days', '1w', '1.5h', '-1', 'd', '7D', ' 7d', '7d ']) {
    assert.match(configError({ TASK_RETENTION: value }).message, /TASK_RETENTION/, `TASK_RETENTION=${JSON.stringify(value)}`);
  }
});

// A lease shorter than a heartbeat round trip would have every running task reaped from under its worker.
test('TASK_LEASE_MS is bounded by LIMITS; the interval settings by their own ranges', () => {
  assert.is(loadConfig({ TASK_LEASE_MS: String(LIMITS.minLeaseMs) }).taskLeaseMs, LIMITS.minLeaseMs);
  assert.is(loadConfig({ TASK_LEASE_MS: String(LIMITS.maxLeaseMs) }).taskLeaseMs, LIMITS.maxLeaseMs);
  configError({ TASK_LEASE_MS: String(LIMITS.minLeaseMs - 1) });
  configError({ TASK_LEASE_MS: String(LIMITS.maxLeaseMs + 1) });
  const bounds: [string, number, number][] = [
    ['RETENTION_INTERVAL_MS', 1_000, 86_400_000],
    ['RELAY_INTERVAL_MS', 10, 60_000],
    ['REAPER_INTERVAL_MS', 100, 600_000],
    ['CANCEL_GRACE_MS', 0, 600_000],
    ['QUEUED_RECONCILE_MS', 1_000, 86_400_000],
  ];
  for (const [name, min, max] of bounds) {
    loadConfig({ [name]: String(min) });
    loadConfig({ [name]: String(max) });
    if (min > 0) assert.match(configError({ [name]: String(min - 1) }).message, name);
    assert.match(configError({ [name]: String(max + 1) }).message, name);
    assert.match(configError({ [name]: '1s' }).message, name, `${name} takes plain milliseconds only`);
  }
});

test('an empty string means unset: the default applies', () => {
  const config = loadConfig({
    DATABASE_URL: '',
    AMQP_URL: '',
    PORT: '',
    TASKS_QUEUE: '',
    WORKER_CONCURRENCY: '',
    LOG_LEVEL: '',
    WORKER_ID: '',
    TASK_LEASE_MS: '',
    TASK_RETENTION: '',
  });
  const defaults = loadConfig({});
  assert.equal(config, defaults);
});

test('variables the service does not know are ignored', () => {
  const config = loadConfig({ PATH: '/usr/bin', HOME: '/root', PORT: '8001', NODE_ENV: 'production' });
  assert.is(config.port, 8001);
  assert.not.ok('PATH' in config);
});

test('each invalid variable is named in the error', () => {
  assert.match(configError({ DATABASE_URL: 'not a url' }).message, /DATABASE_URL/);
  assert.match(configError({ AMQP_URL: '127.0.0.1 5672' }).message, /AMQP_URL/);
  assert.match(configError({ PORT: 'eighty' }).message, /PORT/);
  assert.match(configError({ TASKS_QUEUE: 'has spaces' }).message, /TASKS_QUEUE/);
  assert.match(configError({ TASKS_QUEUE: 'q'.repeat(201) }).message, /TASKS_QUEUE/);
  assert.match(configError({ LOG_LEVEL: 'loud' }).message, /LOG_LEVEL/);
  assert.match(configError({ PUBLISH_TIMEOUT_MS: '0' }).message, /PUBLISH_TIMEOUT_MS/);
});

// `localhost:5672` parses as a URL whose scheme is `localhost:`; accepted, it would only fail later, inside the
// broker's endless reconnect loop, instead of stopping the service at start with a clear message.
test('URLs must use their service\'s scheme', () => {
  assert.match(configError({ AMQP_URL: 'localhost:5672' }).message, /AMQP_URL/);
  assert.match(configError({ AMQP_URL: 'http://127.0.0.1:5672' }).message, /AMQP_URL/);
  assert.match(configError({ DATABASE_URL: 'mysql://127.0.0.1/conveyor' }).message, /DATABASE_URL/);
  assert.is(loadConfig({ AMQP_URL: 'amqps://mq.internal' }).amqpUrl, 'amqps://mq.internal');
  assert.is(loadConfig({ DATABASE_URL: 'postgresql://db/x' }).databaseUrl, 'postgresql://db/x');
});

// A blank number must not silently become 0 (for PORT: a random port nobody can reach).
test('a whitespace-only number is invalid, not 0', () => {
  assert.match(configError({ PORT: ' ' }).message, /PORT/);
  assert.match(configError({ SHUTDOWN_TIMEOUT_MS: '  ' }).message, /SHUTDOWN_TIMEOUT_MS/);
});

test('several invalid variables are reported together in one ConfigError', () => {
  const error = configError({ PORT: 'eighty', WORKER_CONCURRENCY: '0', LOG_LEVEL: 'loud', AMQP_URL: 'nope', TASKS_QUEUE: 'tasks' });
  for (const name of ['PORT', 'WORKER_CONCURRENCY', 'LOG_LEVEL', 'AMQP_URL']) assert.match(error.message, name);
  assert.not.match(error.message, 'TASKS_QUEUE');
  assert.is(error.code, 'invalid-configuration');
});

test('the result is frozen', () => {
  const config = loadConfig({ PORT: '8080' });
  assert.ok(Object.isFrozen(config));
  // ES modules are strict: writing to a frozen object throws rather than being ignored.
  assert.throws(() => {
    (config as { port: number }).port = 1;
  }, TypeError);
  assert.is(config.port, 8080);
});

test.run();
