// Scrapes /metrics of a real API and a real worker while tasks flow, parses the exposition, and checks that
// counters and histograms move by exact amounts, that gauges follow the tasks table, that label sets stay bounded
// whatever ids pass through, and that no password reaches /metrics, /readyz or a log line.
import { randomBytes, randomUUID } from 'node:crypto';
import pg from 'pg';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { newApiKey } from '../../services/core/src/auth/api-key.ts';
import { controlExchange } from '../../services/core/src/queue/control.ts';
import { FINISHED_STATUSES, TASK_STATUSES } from '../../services/core/src/tasks/state.ts';
import type { WorkerService } from '../../services/worker/src/service.ts';
import { deleteExchanges, deleteQueues, dropDatabase, freePort, freshDatabaseUrl, freshQueueName } from '../support/isolation.ts';
import { ENTRY_POINTS, killAll, type ServiceProcess, spawnService } from '../support/processes.ts';
import { delta, type Exposition, ExpositionError, parseExposition, scrape } from '../support/prometheus.ts';
import { services } from '../support/services.ts';
import { eventually, request, TestWorld } from '../support/system.ts';

type Ctx = { world: TestWorld; outbox: TestWorld; baseUrl: string; outboxUrl: string; worker: WorkerService; db: pg.Client };
const test = suite<Ctx>('api: metrics', {} as Ctx);

const TASKS = '/api/v1/tasks';
const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/i;
// Every route template the API has; a route label outside this list is a raw path.
const ROUTES = new Set([TASKS, `${TASKS}/:id`, `${TASKS}/:id/events`, `${TASKS}/:id/cancel`, `${TASKS}/:id/retry`, '/metrics', '/healthz', '/readyz', '/openapi.json', '/docs', '/docs/init.js', '/docs/:asset', 'unmatched']);
// Every metric of services/core/src/metrics.ts, with its type: each process registers them all.
const FAMILIES = {
  conveyor_http_requests_total: 'counter', conveyor_http_request_duration_seconds: 'histogram', conveyor_tasks_submitted_total: 'counter',
  conveyor_submit_rejections_total: 'counter', conveyor_task_wait_seconds: 'histogram', conveyor_task_run_seconds: 'histogram',
  conveyor_task_outcomes_total: 'counter', conveyor_task_retries_scheduled_total: 'counter', conveyor_publish_confirms_total: 'counter',
  conveyor_publish_failures_total: 'counter', conveyor_broker_connected: 'gauge', conveyor_database_up: 'gauge',
  conveyor_task_cancel_latency_seconds: 'histogram', conveyor_task_duplicate_executions_total: 'counter', conveyor_relay_published_total: 'counter',
  conveyor_tasks_reaped_total: 'counter', conveyor_worker_inflight_tasks: 'gauge', conveyor_worker_concurrency: 'gauge',
  conveyor_worker_heartbeats_total: 'counter', conveyor_worker_handler_errors_total: 'counter',
  // prom-client's process defaults, under our prefix.
  conveyor_process_cpu_seconds_total: 'counter', conveyor_process_resident_memory_bytes: 'gauge', conveyor_nodejs_eventloop_lag_seconds: 'gauge',
  conveyor_nodejs_heap_size_used_bytes: 'gauge', conveyor_nodejs_gc_duration_seconds: 'histogram',
} as const;
const API_ONLY = { conveyor_tasks: 'gauge', conveyor_outbox_pending_tasks: 'gauge', conveyor_outbox_oldest_pending_age_seconds: 'gauge' } as const;

test.before(async (ctx) => {
  ctx.world = await TestWorld.create();
  const api = await ctx.world.startApi();
  ctx.baseUrl = api.baseUrl;
  // A short lease makes heartbeats (every third of it) frequent enough to count.
  ctx.worker = await ctx.world.startWorker({ TASK_LEASE_MS: '1000', WORKER_CONCURRENCY: '2' });
  await eventually(async () => api.broker.connected, 10_000, 'the API to connect to RabbitMQ');
  ctx.db = new pg.Client({ connectionString: ctx.world.env['DATABASE_URL'] });
  await ctx.db.connect();
  // A second world whose API has no RabbitMQ: its submits stay in the outbox.
  ctx.outbox = await TestWorld.create();
  ctx.outboxUrl = (await ctx.outbox.startApi({ AMQP_URL: `amqp://guest:guest@127.0.0.1:${await freePort()}` })).baseUrl;
});

test.after(async (ctx) => {
  await killAll();
  await ctx.db?.end();
  await ctx.world?.teardown();
  await ctx.outbox?.teardown();
});

const apiMetrics = (ctx: Ctx) => scrape(`${ctx.baseUrl}/metrics`);
const workerUrl = (ctx: Ctx) => `http://127.0.0.1:${ctx.worker.probes.port}`;
const workerMetrics = (ctx: Ctx) => scrape(`${workerUrl(ctx)}/metrics`);

async function submit(baseUrl: string, body: Record<string, unknown>, headers: Record<string, string> = {}): Promise<string> {
  const res = await request(baseUrl, 'POST', TASKS, body, headers);
  assert.is(res.status, 201, res.text);
  return res.body.id as string;
}

/** Waits, reading PostgreSQL rather than the API so that no HTTP request is counted, until every task is in `statuses`. */
function allIn(db: pg.Client, ids: readonly string[], statuses: readonly string[] = FINISHED_STATUSES, timeoutMs = 10_000) {
  return eventually(async () => {
    const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM tasks WHERE id = ANY($1::uuid[]) AND status = ANY($2::task_status[])', [ids, statuses]);
    return rows[0]?.n === ids.length;
  }, timeoutMs, `${ids.length} tasks to be ${statuses.join('/')}`);
}

function assertDeltas(before: Exposition, after: Exposition, expected: [string, Record<string, string>, number][]) {
  for (const [name, labels, by] of expected) assert.is(delta(before, after, name, labels), by, `${name}${JSON.stringify(labels)}`);
}

function assertFamilies(exposition: Exposition, service: string, families: Record<string, string>) {
  for (const [name, type] of Object.entries(families)) {
    const family = exposition.family(name);
    assert.is(family.type, type, `${name} type`);
    assert.ok(family.help, `${name} has HELP`);
  }
  for (const family of exposition.families.values()) {
    assert.ok(family.name.startsWith('conveyor_'), `${family.name} carries the prefix`);
    for (const sample of family.samples) assert.is(sample.labels['service'], service, `${sample.name} labelled service=${service}`);
  }
}

test('the parser reads HELP/TYPE, escaped label values, histograms, and refuses malformed text', () => {
  const text = [
    '# HELP x_total Says \\\\ and\\nmore.', '# TYPE x_total counter',
    'x_total{path="a\\"b\\\\c\\nd",empty=""} 3', 'x_total{path="z",} 1.5e1 1700000000000',
    '# TYPE h histogram', 'h_bucket{le="0.1"} 1', 'h_bucket{le="+Inf"} 2', 'h_sum 0.3', 'h_count 2', 'free 1',
  ].join('\n');
  const parsed = parseExposition(text);
  assert.is(parsed.family('x_total').help, 'Says \\ and\nmore.');
  assert.equal(parsed.samples('x_total', { empty: '' })[0]?.labels, { path: 'a"b\\c\nd', empty: '' });
  assert.is(parsed.sum('x_total'), 18);
  assert.equal(parsed.family('h').samples.map((s) => s.name), ['h_bucket', 'h_bucket', 'h_sum', 'h_count']);
  assert.is(parsed.family('free').type, 'untyped');
  for (const bad of ['x{a="1} 1', 'x{a="1"} one', 'x{a="\\q"} 1', 'x{a="1",a="2"} 1', 'x 1\nx 2', '# TYPE h histogram\nh_bucket{le="+Inf"} 2\nh_count 3']) {
    assert.throws(() => parseExposition(bad), (error: unknown) => error instanceof ExpositionError, bad);
  }
});

test('API /metrics: every metric typed, documented, prefixed and labelled service=api; GC and heap are reported', async (ctx) => {
  const before = await apiMetrics(ctx);
  assertFamilies(before, 'api', { ...FAMILIES, ...API_ONLY });
  assert.is(before.single('conveyor_broker_connected'), 1);
  const lag = before.single('conveyor_nodejs_eventloop_lag_seconds');
  assert.ok(Number.isFinite(lag) && lag >= 0, `event-loop lag ${lag}`);
  assert.ok(before.single('conveyor_nodejs_heap_size_used_bytes') > 1_000_000);
  // Garbage enough for several young-generation collections, which the GC histogram must count.
  let kept = 0;
  for (let i = 0; i < 3_000; i++) kept += new Array(10_000).fill(i).length;
  assert.ok(kept > 0);
  await eventually(async () => delta(before, await apiMetrics(ctx), 'conveyor_nodejs_gc_duration_seconds_count') > 0, 5_000, 'GC to be counted');
});

test('worker probe port: /healthz and /readyz ok, /metrics labelled service=worker with its concurrency', async (ctx) => {
  assert.equal((await request(workerUrl(ctx), 'GET', '/healthz')).body, { status: 'ok' });
  const ready = await request(workerUrl(ctx), 'GET', '/readyz');
  assert.equal([ready.status, ready.body], [200, { status: 'ok' }]);
  assert.is((await request(workerUrl(ctx), 'GET', '/nothing')).status, 404);
  const metrics = await workerMetrics(ctx);
  assertFamilies(metrics, 'worker', FAMILIES);
  assert.is(metrics.single('conveyor_worker_concurrency'), 2);
  assert.is(metrics.single('conveyor_worker_inflight_tasks'), 0);
  assert.is(metrics.single('conveyor_broker_connected'), 1);
});

test('completed, failed, retried and timed-out tasks move submit, HTTP, outcome, retry, wait/run and publish metrics exactly', async (ctx) => {
  const [api0, worker0] = await Promise.all([apiMetrics(ctx), workerMetrics(ctx)]);
  const ids = [
    ...(await Promise.all([1, 2, 3].map((n) => submit(ctx.baseUrl, { type: 'echo', payload: { n } })))),
    await submit(ctx.baseUrl, { type: 'fail' }),
    await submit(ctx.baseUrl, { type: 'fail', maxAttempts: 2, backoff: { type: 'fixed', delayMs: 100, jitter: false } }),
    await submit(ctx.baseUrl, { type: 'sleep', payload: { ms: 10_000 }, timeoutMs: 300 }),
  ];
  await allIn(ctx.db, ids);
  for (const id of ids) assert.is((await request(ctx.baseUrl, 'GET', `${TASKS}/${id}`)).status, 200);
  assert.is((await request(ctx.baseUrl, 'GET', `${TASKS}/${ids[4]}/events`)).status, 200);
  const [api1, worker1] = await Promise.all([apiMetrics(ctx), workerMetrics(ctx)]);
  assertDeltas(api0, api1, [
    ['conveyor_tasks_submitted_total', { type: 'echo' }, 3], ['conveyor_tasks_submitted_total', { type: 'fail' }, 2], ['conveyor_tasks_submitted_total', { type: 'sleep' }, 1],
    ['conveyor_http_requests_total', { method: 'POST', route: TASKS, status: '201' }, 6],
    ['conveyor_http_requests_total', { method: 'GET', route: `${TASKS}/:id`, status: '200' }, 6],
    ['conveyor_http_requests_total', { method: 'GET', route: `${TASKS}/:id/events`, status: '200' }, 1],
    // The first scrape is counted (once, by its template), after it answered.
    ['conveyor_http_requests_total', { method: 'GET', route: '/metrics', status: '200' }, 1],
    ['conveyor_http_request_duration_seconds_count', { method: 'POST', route: TASKS }, 6],
    ['conveyor_submit_rejections_total', {}, 0],
    // Six submits, plus the relay publishing the retry once its backoff ran out.
    ['conveyor_publish_confirms_total', {}, 7], ['conveyor_relay_published_total', {}, 1], ['conveyor_publish_failures_total', {}, 0],
  ]);
  assertDeltas(worker0, worker1, [
    ['conveyor_task_outcomes_total', { type: 'echo', outcome: 'completed' }, 3], ['conveyor_task_outcomes_total', { type: 'fail', outcome: 'failed' }, 2],
    ['conveyor_task_outcomes_total', { type: 'fail', outcome: 'retried' }, 1], ['conveyor_task_outcomes_total', { type: 'sleep', outcome: 'timed_out' }, 1],
    ['conveyor_task_outcomes_total', {}, 7], ['conveyor_task_retries_scheduled_total', { type: 'fail' }, 1], ['conveyor_task_retries_scheduled_total', {}, 1],
    ['conveyor_task_wait_seconds_count', { type: 'echo' }, 3], ['conveyor_task_wait_seconds_count', { type: 'fail' }, 3], ['conveyor_task_wait_seconds_count', { type: 'sleep' }, 1],
    ['conveyor_task_run_seconds_count', { type: 'echo', outcome: 'completed' }, 3], ['conveyor_task_run_seconds_count', { type: 'fail', outcome: 'retried' }, 1],
    ['conveyor_task_run_seconds_count', { type: 'fail', outcome: 'failed' }, 2], ['conveyor_task_run_seconds_count', { type: 'sleep', outcome: 'timed_out' }, 1],
    // A timeout stops the handler; it is an outcome, not a handler error.
    ['conveyor_worker_handler_errors_total', { type: 'fail' }, 3], ['conveyor_worker_handler_errors_total', { type: 'sleep' }, 0],
    ['conveyor_publish_confirms_total', {}, 0],
  ]);
  const slept = delta(worker0, worker1, 'conveyor_task_run_seconds_sum', { type: 'sleep', outcome: 'timed_out' });
  assert.ok(slept >= 0.3 && slept < 5, `the timed-out attempt ran ${slept} s, its 300 ms timeout and a little`);
  assert.is(worker1.single('conveyor_worker_inflight_tasks'), 0);
});

test('a running task shows in flight and heartbeats; its cancel counts as cancelled with its latency', async (ctx) => {
  const [api0, worker0] = await Promise.all([apiMetrics(ctx), workerMetrics(ctx)]);
  const id = await submit(ctx.baseUrl, { type: 'sleep', payload: { ms: 60_000 } });
  await allIn(ctx.db, [id], ['in_progress']);
  // TASK_LEASE_MS 1000: a heartbeat every 333 ms while the task runs.
  await eventually(async () => {
    const now = await workerMetrics(ctx);
    return now.single('conveyor_worker_inflight_tasks') === 1 && delta(worker0, now, 'conveyor_worker_heartbeats_total') >= 2;
  }, 5_000, 'one task in flight and two heartbeats');
  assert.is((await request(ctx.baseUrl, 'POST', `${TASKS}/${id}/cancel`)).status, 202);
  await allIn(ctx.db, [id], ['cancelled']);
  const [api1, worker1] = await Promise.all([apiMetrics(ctx), workerMetrics(ctx)]);
  assertDeltas(worker0, worker1, [
    ['conveyor_task_outcomes_total', { type: 'sleep', outcome: 'cancelled' }, 1], ['conveyor_task_outcomes_total', {}, 1],
    ['conveyor_task_cancel_latency_seconds_count', { type: 'sleep' }, 1], ['conveyor_task_run_seconds_count', { type: 'sleep', outcome: 'cancelled' }, 1],
  ]);
  assert.is(worker1.single('conveyor_worker_inflight_tasks'), 0);
  assertDeltas(api0, api1, [['conveyor_http_requests_total', { method: 'POST', route: `${TASKS}/:id/cancel`, status: '202' }, 1]]);
});

test('refused submits count by reason (422, 415, 400, 413) and status, never as submitted', async (ctx) => {
  const before = await apiMetrics(ctx);
  const json = { 'content-type': 'application/json' };
  assert.is((await request(ctx.baseUrl, 'POST', TASKS, { type: 'transcode' })).status, 422);
  assert.is((await request(ctx.baseUrl, 'POST', TASKS, { type: 'sleep', payload: {} })).status, 422);
  assert.is((await request(ctx.baseUrl, 'POST', TASKS, '{"type":"echo"}', { 'content-type': 'text/plain' })).status, 415);
  assert.is((await request(ctx.baseUrl, 'POST', TASKS, '{"type":', json)).status, 400);
  assert.is((await request(ctx.baseUrl, 'POST', TASKS, { type: 'echo', payload: 'x'.repeat(1024 * 1024) })).status, 413);
  const after = await apiMetrics(ctx);
  assertDeltas(before, after, [
    ['conveyor_submit_rejections_total', { reason: 'invalid' }, 2], ['conveyor_submit_rejections_total', { reason: 'media_type' }, 1],
    ['conveyor_submit_rejections_total', { reason: 'malformed' }, 1], ['conveyor_submit_rejections_total', { reason: 'too_large' }, 1],
    ['conveyor_submit_rejections_total', {}, 5], ['conveyor_tasks_submitted_total', {}, 0],
    ['conveyor_http_requests_total', { method: 'POST', route: TASKS, status: '422' }, 2], ['conveyor_http_requests_total', { method: 'POST', route: TASKS, status: '415' }, 1],
    ['conveyor_http_requests_total', { method: 'POST', route: TASKS, status: '400' }, 1], ['conveyor_http_requests_total', { method: 'POST', route: TASKS, status: '413' }, 1],
  ]);
});

test('with RabbitMQ unreachable, submits wait in the outbox gauges; the table is read at most once per cache period', async (ctx) => {
  for (let n = 0; n < 3; n++) await submit(ctx.outboxUrl, { type: 'echo', payload: { n } });
  const first = await scrape(`${ctx.outboxUrl}/metrics`);
  assert.is(first.single('conveyor_broker_connected'), 0);
  assert.is(first.single('conveyor_outbox_pending_tasks'), 3);
  assert.is(first.single('conveyor_tasks', { status: 'pending' }), 3);
  assert.ok(first.single('conveyor_outbox_oldest_pending_age_seconds') > 0);
  assert.is(first.sum('conveyor_publish_failures_total', { reason: 'disconnected' }), 3);
  assert.is(first.sum('conveyor_relay_published_total'), 0);
  assert.is((await request(ctx.outboxUrl, 'GET', '/readyz')).status, 503);
  await submit(ctx.outboxUrl, { type: 'echo', payload: { n: 3 } });
  // Moments later, well inside the 10 s cache: the gauges still show the first read, not a new count.
  const second = await scrape(`${ctx.outboxUrl}/metrics`);
  assert.is(second.single('conveyor_outbox_pending_tasks'), 3);
  assert.is(second.sum('conveyor_publish_failures_total', { reason: 'disconnected' }), 4);
});

test('label sets stay bounded after 1,000 distinct task ids pass through GETs (404s too) and submits', async (ctx) => {
  const [api0, worker0] = await Promise.all([apiMetrics(ctx), workerMetrics(ctx)]);
  const submitted = await Promise.all(Array.from({ length: 100 }, (_, n) => submit(ctx.baseUrl, { type: 'echo', payload: { n } })));
  const paths = [
    ...submitted.map((id) => `${TASKS}/${id}`),
    ...Array.from({ length: 800 }, () => `${TASKS}/${randomUUID()}`),
    ...Array.from({ length: 100 }, () => `${TASKS}/${randomUUID()}/events`),
    ...Array.from({ length: 50 }, (_, n) => `${TASKS}/not-a-uuid-${n}`),
    ...Array.from({ length: 50 }, () => `/api/v1/things/${randomUUID()}`),
  ];
  for (let i = 0; i < paths.length; i += 25) await Promise.all(paths.slice(i, i + 25).map((path) => request(ctx.baseUrl, 'GET', path)));
  await allIn(ctx.db, submitted, ['completed']);
  const [api1, worker1] = await Promise.all([apiMetrics(ctx), workerMetrics(ctx)]);
  assert.is(delta(api0, api1, 'conveyor_http_requests_total', { method: 'GET', route: `${TASKS}/:id`, status: '404' }), 800);
  assert.is(delta(api0, api1, 'conveyor_http_requests_total', { method: 'GET', route: 'unmatched', status: '404' }), 50);
  for (const [before, after] of [[api0, api1], [worker0, worker1]] as const) {
    const seriesCount = (e: Exposition) => [...e.families.keys()].reduce((n, name) => n + e.seriesOf(name).length, 0);
    assert.ok(seriesCount(after) - seriesCount(before) < 20, `series grew from ${seriesCount(before)} to ${seriesCount(after)}`);
    for (const family of after.families.values()) {
      assert.ok(after.seriesOf(family.name).length <= 20, `${family.name}: ${after.seriesOf(family.name).length} series`);
      for (const { labels } of family.samples) {
        for (const value of Object.values(labels)) assert.not.match(value, /[0-9a-f]{8}-[0-9a-f]{4}|not-a-uuid|things/i, `${family.name} label ${value}`);
        if (labels['route'] !== undefined) assert.ok(ROUTES.has(labels['route']), `route label ${labels['route']} is a template`);
      }
    }
  }
  assert.ok(api1.seriesOf('conveyor_http_requests_total').length < 20);
});

test('conveyor_tasks{status} and the outbox gauges follow the tasks table once their cache expires', async (ctx) => {
  const { rows } = await ctx.db.query<{ status: string; n: number }>('SELECT status::text, count(*)::int AS n FROM tasks GROUP BY status');
  const counts = new Map(rows.map((row) => [row.status, row.n]));
  // The earlier tests left over a hundred completed tasks, three failed (two fail tasks and the timed-out sleep), one cancelled.
  assert.equal([(counts.get('completed') ?? 0) > 100, counts.get('failed'), counts.get('cancelled')], [true, 3, 1]);
  const matches = (e: Exposition) => TASK_STATUSES.every((status) => e.single('conveyor_tasks', { status }) === (counts.get(status) ?? 0));
  await Promise.all([
    eventually(async () => matches(await apiMetrics(ctx)), 15_000, 'conveyor_tasks to match the table'),
    eventually(async () => (await scrape(`${ctx.outboxUrl}/metrics`)).single('conveyor_outbox_pending_tasks') === 4, 15_000, 'the outbox gauge to count the fourth submit'),
  ]);
  assert.is((await apiMetrics(ctx)).single('conveyor_outbox_pending_tasks'), 0);
});

test('a healthy API reports conveyor_database_up 1 from its first scrape', async (ctx) => {
  const fresh = await ctx.world.startApi();
  assert.is((await scrape(`${fresh.baseUrl}/metrics`)).single('conveyor_database_up'), 1);
});

test('a worker reports conveyor_database_up 1 while PostgreSQL answers', async (ctx) => {
  assert.is((await request(workerUrl(ctx), 'GET', '/readyz')).status, 200, 'PostgreSQL answers the worker');
  assert.is((await workerMetrics(ctx)).single('conveyor_database_up'), 1);
});

test('passwords in DATABASE_URL and AMQP_URL and the bootstrap API key reach neither /metrics, /readyz nor any log line (LOG_LEVEL=debug)', async () => {
  const { amqpUrl } = await services();
  const secret = `pw-${randomBytes(8).toString('hex')}`;
  const refusedSecret = `pw-${randomBytes(8).toString('hex')}`;
  // The local PostgreSQL trusts 127.0.0.1, so it accepts any password; RabbitMQ checks its own (guest's is 'guest').
  const databaseUrl = new URL(await freshDatabaseUrl());
  databaseUrl.password = secret;
  const broker = new URL(amqpUrl);
  const queue = freshQueueName();
  // The bootstrap API key is a credential too: it is used for every request below and must not leak either.
  const apiKey = newApiKey();
  const auth = { authorization: `Bearer ${apiKey}` };
  const env = {
    DATABASE_URL: databaseUrl.toString(),
    AMQP_URL: amqpUrl,
    TASKS_QUEUE: queue,
    HOST: '127.0.0.1',
    PORT: '0',
    METRICS_PORT: '0',
    LOG_LEVEL: 'debug',
    TASK_LEASE_MS: '1000',
    AUTH_MODE: 'apikey',
    AUTH_BOOTSTRAP_KEY: apiKey,
    PUBLIC_METRICS: 'true',
  };
  const refusedUrl = new URL(amqpUrl);
  refusedUrl.password = refusedSecret;
  try {
    const api = spawnService('api', ENTRY_POINTS.api, env);
    const apiUrl = `http://127.0.0.1:${String((await api.waitForMessage('listening', {}, 20_000))['port'])}`;
    await api.waitForMessage('connected to RabbitMQ', {}, 20_000);
    const worker = spawnService('worker', ENTRY_POINTS.worker, { ...env, WORKER_ID: 'redaction' });
    const refused = spawnService('refused worker', ENTRY_POINTS.worker, { ...env, AMQP_URL: refusedUrl.toString(), WORKER_ID: 'refused' });
    const probeUrl = async (p: ServiceProcess) => `http://127.0.0.1:${String((await p.waitForMessage('probes listening', {}, 20_000))['port'])}`;
    const [workerUrl, refusedProbes] = await Promise.all([probeUrl(worker), probeUrl(refused)]);
    // The refused worker logs its broker URL: the check below is only meaningful if a URL is logged at all.
    const warned = await refused.waitForMessage('RabbitMQ not responding', {}, 20_000);
    assert.is(warned['broker'], `amqp://${broker.username}:***@${broker.host}`);
    const ids = [
      await submit(apiUrl, { type: 'echo' }, auth),
      await submit(apiUrl, { type: 'fail' }, auth),
      await submit(apiUrl, { type: 'sleep', payload: { ms: 800 } }, auth),
    ];
    await eventually(async () => {
      const states = await Promise.all(ids.map(async (id) => (await request(apiUrl, 'GET', `${TASKS}/${id}`, undefined, auth)).body.status));
      return states.every((s) => FINISHED_STATUSES.includes(s));
    }, 15_000, 'the tasks to finish');
    const pages = await Promise.all(
      [`${apiUrl}/metrics`, `${apiUrl}/readyz`, `${workerUrl}/metrics`, `${workerUrl}/readyz`, `${refusedProbes}/metrics`, `${refusedProbes}/readyz`].map(async (url) => {
        const res = await fetch(url);
        return { url, status: res.status, text: await res.text() };
      }),
    );
    assert.equal(pages.map((p) => p.status), [200, 200, 200, 200, 200, 503], 'the refused worker is not ready');
    await Promise.all([api.stop(), worker.stop(), refused.stop()]);
    const logs = [api, worker, refused].flatMap((p) => p.output);
    assert.ok([api, worker].every((p) => p.lines.some((line) => line.level === 'debug')), 'debug lines were written');
    assert.ok(worker.lines.some((line) => line.msg === 'task completed'), 'the worker logged the flow');
    for (const [where, text] of [...pages.map((p) => [p.url, p.text]), ...logs.map((line) => ['a log line', line])]) {
      for (const leak of [secret, refusedSecret, apiKey, apiKey.slice(8), ...(broker.password ? [`:${broker.password}@`] : [])]) assert.not.ok(text?.includes(leak), `${where} holds a password: ${text?.slice(0, 300)}`);
    }
  } finally {
    await killAll();
    await dropDatabase(databaseUrl.toString());
    await deleteQueues([queue]);
    await deleteExchanges([controlExchange(queue)]);
  }
});

test.run();
