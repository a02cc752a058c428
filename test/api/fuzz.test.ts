// Property-based tests of what the API accepts: fast-check sends thousands of generated requests (JSON bodies, raw
// bytes, headers, query strings, path ids, framing) to the running API over real sockets. Each answer must be a
// 2xx, or a 4xx written as a problem; the expected status is predicted from the documented limits wherever the
// input allows it, and accepted tasks must read back as sent. After each property the API must still serve; at
// the end the database must hold exactly the tasks the test saw created. FUZZ_SEED=<n> replays a run (the seed
// is printed on failure); FUZZ_SCALE=<x> multiplies the number of runs.
import { brotliCompressSync, deflateRawSync, deflateSync, gzipSync } from 'node:zlib';
import fc from 'fast-check';
import pg from 'pg';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ALL_SCOPES, API_KEY_PATTERN } from '../../services/core/src/auth/api-key.ts';
import { TaskStatus } from '../../services/core/src/tasks/state.ts';
import { type ApiService, createApiService } from '../../services/api/src/service.ts';
import { type RawRequest, type RawResponse, rawRequest } from '../support/raw-http.ts';
import { eventually, TestWorld } from '../support/system.ts';
import {
  canonical,
  instantOf,
  isObject,
  keyVerdict,
  type Ledger,
  listVerdict,
  type Outcome,
  ServerLog,
  textVerdict,
  UUID,
  UUID_SHAPE,
} from '../support/fuzz-model.ts';
import * as bodies from '../support/fuzz-bodies.ts';
import * as requests from '../support/fuzz-requests.ts';

type Ctx = { world: TestWorld; api: ApiService; baseUrl: string; log: ServerLog; db: pg.Client; bodyLimit: number; prototypes: string[] };
const test = suite<Ctx>('api: fuzz');

const TASKS = '/api/v1/tasks';
const KEYS = '/api/v1/keys';
const PROBLEM = 'application/problem+json';
const STANDARD_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

const SEED = envNumber('FUZZ_SEED', () => (Math.random() * 2 ** 31) | 0);
const SCALE = envNumber('FUZZ_SCALE', () => 1);
const ledger: Ledger = { tasks: new Map(), deleted: new Set(), keysIssued: 0, idempotency: new Map() };

function envNumber(name: string, fallback: () => number): number {
  const given = process.env[name];
  if (given === undefined || given === '') return fallback();
  const value = Number(given);
  if (!Number.isFinite(value) || value < 0) throw new Error(`${name} must be a non-negative number, got '${given}'`);
  return value;
}

/** Runs a property; a failure names the seed that replays it (fast-check adds the counterexample and its path). */
async function check<T>(arbitrary: fc.Arbitrary<T>, runs: number, predicate: (value: T) => Promise<void>): Promise<void> {
  try {
    await fc.assert(fc.asyncProperty(arbitrary, predicate), { seed: SEED, numRuns: Math.max(1, Math.round(runs * SCALE)), includeErrorInReport: true });
  } catch (error) {
    const failure = new Error(`replay with: FUZZ_SEED=${SEED} npm test -- api/fuzz\n${(error as Error).message}`, { cause: error });
    // The report already holds the failing assertion's stack; uvu would print the message a second time as ours.
    failure.stack = 'Error';
    throw failure;
  }
}

const bearer = (key: string) => ['Authorization', `Bearer ${key}`] as const;
const prototypeShape = () =>
  [Object.prototype, Array.prototype, Function.prototype, String.prototype, Number.prototype].map((p) => Object.getOwnPropertyNames(p).sort().join());

test.before(async (ctx) => {
  ctx.world = await TestWorld.create();
  ctx.log = new ServerLog();
  const config = ctx.world.config({ AUTH_MODE: 'apikey', RATE_LIMIT_PER_SECOND: '0' });
  ctx.bodyLimit = config.bodyLimitBytes;
  // Started here rather than with world.startApi, to read its log: every 5xx is reported with the error it logged.
  ctx.api = createApiService(config, ctx.log.logger);
  await ctx.api.lifecycle.start();
  ctx.baseUrl = ctx.api.url();
  await eventually(async () => ctx.api.broker.connected, 10_000, 'the API to connect to RabbitMQ');
  ctx.db = new pg.Client({ connectionString: ctx.world.env['DATABASE_URL'] });
  await ctx.db.connect();
  ctx.prototypes = prototypeShape();
});

test.after(async (ctx) => {
  await ctx.api?.lifecycle.stop().catch(() => undefined);
  await ctx.db?.end().catch(() => undefined);
  await ctx.world?.teardown();
});

async function keyFor(ctx: Ctx, tenant: string, scopes: readonly string[] = ALL_SCOPES): Promise<string> {
  ledger.keysIssued += 1;
  return (await ctx.api.database.apiKeys().createKey({ tenant, scopes: scopes as typeof ALL_SCOPES })).secret;
}

/** Sends a request and checks what holds for every answer: no 5xx, a sane request id, and 4xx as problems. */
async function send(ctx: Ctx, request: RawRequest): Promise<RawResponse> {
  const res = await rawRequest(ctx.baseUrl, request);
  const what = `${request.method} ${request.target.slice(0, 160)} answered ${res.status}`;
  const requestId = res.headers['x-request-id'] ?? '';
  const exotic = !STANDARD_METHODS.has(request.method);
  if (res.status >= 500 && !(exotic && res.status === 501)) {
    assert.unreachable(`${what}: ${res.text.slice(0, 300)}\nthe server logged: ${ctx.log.describe(requestId)}`);
  }
  assert.ok(res.status >= 200 && (res.status < 500 || exotic), what);
  assert.match(requestId, REQUEST_ID, `${what}: X-Request-Id`);
  assert.is(ctx.log.errorsFor(requestId).length, 0, `${what}, yet the server logged an error: ${ctx.log.describe(requestId)}`);
  const type = res.headers['content-type'] ?? '';
  if (res.status < 400) {
    if (res.body.length > 0) assert.ok(type.startsWith('application/json') && res.json !== undefined, `${what}: JSON body, got ${type}`);
    return res;
  }
  assert.ok(type.startsWith(PROBLEM), `${what}: content-type ${type}, body ${res.text.slice(0, 200)}`);
  if (request.method === 'HEAD') return res;
  const problem = res.json;
  assert.ok(isObject(problem), `${what}: a problem object, got ${res.text.slice(0, 200)}`);
  for (const field of ['type', 'title', 'detail', 'instance']) assert.type(problem[field], 'string', `${what}: problem.${field}`);
  assert.ok((problem['detail'] as string).length > 0, `${what}: an empty detail`);
  assert.is(problem['status'], res.status, `${what}: problem.status`);
  assert.is(problem['instance'], request.target.split('?')[0], `${what}: problem.instance`);
  return res;
}

const postTask = (key: string, body: Buffer | string, headers: (readonly [string, string])[] = [['Content-Type', 'application/json']]) =>
  ({ method: 'POST', target: TASKS, headers: [bearer(key), ...headers], body }) satisfies RawRequest;

/**
 * Submits `body` as `tenant` and holds the answer to the prediction: the status, and for an accepted task that
 * it reads back (answer, GET and later the row) as sent. An idempotent repeat must return the first task.
 */
async function submit(ctx: Ctx, tenant: string, key: string, request: RawRequest, expected: Outcome): Promise<RawResponse> {
  const sentKey = expected.status === 'created' ? (expected.body['idempotencyKey'] as string | undefined) : undefined;
  const earlier = sentKey === undefined ? undefined : ledger.idempotency.get(`${tenant}\u0000${sentKey}`);
  const res = await send(ctx, request);
  // Whatever was expected, a 201 means a row: the final check holds the database to every 201 seen.
  if (res.status === 201) record(tenant, res.json as Record<string, unknown>);
  const what = `${request.method} ${TASKS} (${res.text.slice(0, 300)})`;
  if (expected.status === 'refused') {
    assert.ok(res.status >= 400 && res.status < 500, `${what}: expected a 4xx`);
    return res;
  }
  if (expected.status !== 'created') {
    assert.is(res.status, expected.status, `${what}: expected ${expected.status}`);
    return res;
  }
  if (expected.mayRefuse && res.status === 422) return res;
  assert.is(res.status, earlier ? 200 : 201, `${what}: expected ${earlier ? 200 : 201}`);
  const task = res.json as Record<string, unknown>;
  assert.is(res.headers['location'], `${TASKS}/${String(task['id'])}`);
  if (earlier) {
    assert.is(task['id'], earlier, `${what}: an idempotent repeat returns the first task`);
    return res;
  }
  const read = await send(ctx, { method: 'GET', target: `${TASKS}/${String(task['id'])}`, headers: [bearer(key)] });
  assert.is(read.status, 200);
  for (const answer of [task, read.json as Record<string, unknown>]) assertStored(answer, expected.body, expected.payload, tenant);
  return res;
}

function record(tenant: string, task: Record<string, unknown>): void {
  const id = task['id'] as string;
  ledger.tasks.set(id, { tenant, type: task['type'] as string, payload: task['payload'] });
  if (typeof task['idempotencyKey'] === 'string') ledger.idempotency.set(`${tenant}\u0000${task['idempotencyKey']}`, id);
}

/** The task as answered matches what was sent, defaults filled in. */
function assertStored(task: Record<string, unknown>, body: Record<string, unknown>, payload: unknown, tenant: string): void {
  const what = `task ${String(task['id'])} read back`;
  // Compared as sorted JSON: uvu's deep equality takes an own `constructor` key for the object's class.
  assert.is(canonical(task['payload']), canonical(payload), `${what}: payload`);
  assert.is(task['tenant'], tenant);
  assert.is(task['type'], body['type']);
  assert.equal(task['priority'], body['priority'] ?? 5, `${what}: priority`);
  assert.equal(task['maxAttempts'], body['maxAttempts'] ?? 1, `${what}: maxAttempts`);
  assert.equal(task['timeoutMs'], body['timeoutMs'] ?? null, `${what}: timeoutMs`);
  assert.equal(task['retentionMs'], body['retentionMs'] ?? null, `${what}: retentionMs`);
  assert.is(task['idempotencyKey'], body['idempotencyKey'] ?? null, `${what}: idempotencyKey`);
  const backoff = { type: 'exponential', delayMs: 1_000, maxDelayMs: 300_000, jitter: true, ...(body['backoff'] as object | undefined) };
  assert.equal(task['backoff'], backoff, `${what}: backoff`);
  assert.ok([TaskStatus.pending, TaskStatus.queued].includes(task['status'] as 'pending'), `${what}: status ${String(task['status'])}`);
  const runAt = body['runAt'];
  if (typeof runAt !== 'string') return;
  // PostgreSQL keeps microseconds and the API shows milliseconds: beyond six digits a rounding may carry into the millisecond.
  const sent = instantOf(runAt) as number;
  const got = instantOf(task['runAt'] as string);
  const carry = (/\.(\d+)/.exec(runAt)?.[1]?.length ?? 0) > 6 ? 1 : 0;
  assert.ok(got !== null && got - sent >= 0 && got - sent <= carry, `${what}: runAt ${runAt} came back as ${String(task['runAt'])}`);
}

/** The API still runs, serves the probe and a normal submit/read/list for `tenant`, and no prototype changed. */
async function assertHealthy(ctx: Ctx, tenant: string, key: string): Promise<void> {
  assert.is(ctx.api.lifecycle.state, 'running');
  const health = await send(ctx, { method: 'GET', target: '/healthz' });
  assert.is(health.status, 200);
  assert.equal(health.json, { status: 'ok' });
  assert.equal(prototypeShape(), ctx.prototypes, 'a built-in prototype gained or lost properties');
  assert.is(({} as Record<string, unknown>)['polluted'], undefined);
  const payload = { followUp: ['__proto__', { constructor: { prototype: 1 } }] };
  const body = { type: 'echo', payload };
  await submit(ctx, tenant, key, postTask(key, JSON.stringify(body)), { status: 'created', body, payload });
  const list = await send(ctx, { method: 'GET', target: `${TASKS}?limit=500`, headers: [bearer(key)] });
  assert.is(list.status, 200, `the tenant's list: ${list.text.slice(0, 300)}`);
}

test('POST /tasks: JSON bodies near the valid shape get the predicted status, and accepted ones read back as sent', async (ctx) => {
  const key = await keyFor(ctx, 'bodies');
  await check(bodies.jsonBody, 700, async (body) => {
    const bytes = Buffer.from(JSON.stringify(body) ?? 'null');
    await submit(ctx, 'bodies', key, postTask(key, bytes), textVerdict(bytes, ctx.bodyLimit));
  });
  await assertHealthy(ctx, 'bodies', key);
});

test('POST /tasks: raw texts (number literals, deep nesting, escapes, invalid UTF-8, duplicate and prototype keys, truncation, size)', async (ctx) => {
  const key = await keyFor(ctx, 'raw');
  await check(bodies.rawBody, 600, async (shape) => {
    const bytes = bodies.rawBytes(shape, ctx.bodyLimit);
    await submit(ctx, 'raw', key, postTask(key, bytes), textVerdict(bytes, ctx.bodyLimit));
  });
  await assertHealthy(ctx, 'raw', key);
});

test('POST /tasks: every storable payload (to 32 levels, extreme numbers, any Unicode) reads back unchanged', (ctx) =>
  acceptsEvery(ctx, 'payloads', bodies.validPayloadBody, (body) => JSON.stringify(body).slice(0, 200)));

test('POST /tasks: runAt anywhere in years 0001-9999 (any offset, sub-millisecond digits) is kept as the same instant', (ctx) =>
  acceptsEvery(ctx, 'run-at', bodies.runAtBody, (body) => String(body.runAt)));

/** Every body `arbitrary` makes is valid: each is created and reads back as the model says. */
async function acceptsEvery<T>(ctx: Ctx, label: string, arbitrary: fc.Arbitrary<T>, shown: (body: T) => string): Promise<void> {
  const key = await keyFor(ctx, label);
  await check(arbitrary, 250, async (body) => {
    const bytes = Buffer.from(JSON.stringify(body));
    const expected = textVerdict(bytes, ctx.bodyLimit);
    assert.is(expected.status, 'created', `the generator made an invalid body: ${shown(body)}`);
    await submit(ctx, label, key, postTask(key, bytes), expected);
  });
  await assertHealthy(ctx, label, key);
}

test('POST /tasks: Authorization, Idempotency-Key, Content-Type, X-Request-Id and forwarding headers with odd values', async (ctx) => {
  const keys = { full: await keyFor(ctx, 'headers'), reader: await keyFor(ctx, 'headers', ['tasks:read']), revoked: await keyFor(ctx, 'headers') };
  const revoked = (await ctx.api.database.apiKeys().listKeys('headers')).at(-1);
  await ctx.api.database.apiKeys().revokeKey(revoked?.id as string);
  await check(requests.headerCase, 500, async (c) => {
    const auth = requests.authorization(c.auth, keys);
    const headers: (readonly [string, string])[] = [];
    if (auth !== undefined) headers.push(['Authorization', auth]);
    if (c.contentType !== undefined) headers.push(['Content-Type', c.contentType]);
    for (const value of c.idempotencyKeys) headers.push(['Idempotency-Key', value]);
    if (c.requestId !== undefined) headers.push(['X-Request-Id', c.requestId]);
    if (c.forwardedProto !== undefined) headers.push(['X-Forwarded-Proto', c.forwardedProto], ['X-Forwarded-For', c.forwardedProto]);
    const bytes = Buffer.from(JSON.stringify(c.body));
    const request: RawRequest = { method: 'POST', target: TASKS, headers, body: bytes };
    const scopes = requests.scopesOf(auth, keys);
    let expected: Outcome;
    if (!scopes) expected = { status: 401 };
    else if (!scopes.includes('tasks:write')) expected = { status: 403 };
    else if (!requests.readsAsJson(c.contentType)) expected = { status: 415 };
    else expected = textVerdict(bytes, ctx.bodyLimit, requests.joinedHeader(c.idempotencyKeys));
    const res = await submit(ctx, 'headers', keys.full, request, expected);
    if (res.status === 401) assert.ok(res.headers['www-authenticate']?.startsWith('Bearer realm="conveyor"'), 'a 401 carries a challenge');
    const given = requests.joinedHeader(c.requestId === undefined ? [] : [c.requestId]);
    if (REQUEST_ID.test(given)) assert.is(res.headers['x-request-id'], given, 'a sane X-Request-Id is echoed');
    const https = (c.forwardedProto ?? '').split(',')[0]?.trim().toLowerCase() === 'https';
    assert.is('strict-transport-security' in res.headers, https, `HSTS iff X-Forwarded-Proto says https (${c.forwardedProto})`);
  });
  await assertHealthy(ctx, 'headers', keys.full);
});

test('POST /tasks: Content-Encoding, supported or not, over compressed, plain, corrupt and oversized bodies', async (ctx) => {
  const key = await keyFor(ctx, 'encodings');
  await check(requests.encodingCase, 200, async (c) => {
    const json = JSON.stringify({ type: 'echo', payload: { n: c.n } });
    const bodies: Record<typeof c.data, () => Buffer> = {
      plain: () => Buffer.from(json),
      gzip: () => gzipSync(json),
      deflate: () => deflateSync(json),
      'raw-deflate': () => deflateRawSync(json),
      br: () => brotliCompressSync(json),
      truncated: () => gzipSync(json).subarray(0, c.cut % 30),
      garbage: () => Buffer.from(c.garbage),
      // A few kilobytes that inflate past the body limit.
      bomb: () => gzipSync(JSON.stringify({ type: 'echo', payload: 'x'.repeat(ctx.bodyLimit) })),
    };
    const body = bodies[c.data]();
    const request = postTask(key, body, [['Content-Type', 'application/json'], ['Content-Encoding', c.encoding]]);
    await submit(ctx, 'encodings', key, request, requests.encodingVerdict(c, body, ctx.bodyLimit));
  });
  await assertHealthy(ctx, 'encodings', key);
});

test('HTTP framing errors (bad chunks, short bodies, control bytes, bad lengths) are refused, never counted or logged as server failures', async (ctx) => {
  const key = await keyFor(ctx, 'framing');
  await check(requests.framingCase, 80, async (c) => {
    const requestId = `fuzz-${ctx.log.nextId()}`;
    const request = requests.framedRequest(c, key, requestId);
    const res = await rawRequest(ctx.baseUrl, request).catch((error: Error) => error);
    // A client that gave up halfway may get no answer; every other one gets a 4xx.
    if (res instanceof Error) assert.ok(request.endAfterWrite, `no answer to a framing error: ${res.message}`);
    else assert.ok(res.status >= 400 && res.status < 500, `framing error answered ${res.status}`);
    if (!requests.reachesApp(c)) return;
    // The request got past the HTTP parser: wait until the API has finished with it, then see how it counted it.
    const line = await ctx.log.waitFor((l) => l.msg === 'request' && l.requestId === requestId, 10_000, `the API to finish ${requestId}`);
    const logged = ctx.log.describe(requestId);
    assert.ok(Number(line['status']) < 500, `the API counted a client's framing error as a ${String(line['status'])}; it logged: ${logged}`);
    assert.is(ctx.log.errorsFor(requestId).length, 0, `the API logged a client's framing error as a server error: ${logged}`);
  });
  await assertHealthy(ctx, 'framing', key);
});

test('POST /keys: bodies near the valid shape get the predicted status; created keys read back and list', async (ctx) => {
  const key = await keyFor(ctx, 'keys-admin');
  await check(bodies.keyBody, 400, async (body) => {
    const bytes = Buffer.from(JSON.stringify(body) ?? 'null');
    const expected = keyVerdict(bytes, ctx.bodyLimit);
    const res = await send(ctx, { method: 'POST', target: KEYS, headers: [bearer(key), ['Content-Type', 'application/json']], body: bytes });
    assert.is(res.status, expected.status === 'created' ? 201 : expected.status, `POST ${KEYS} ${bytes.toString().slice(0, 200)}: ${res.text.slice(0, 300)}`);
    if (res.status !== 201) return;
    ledger.keysIssued += 1;
    const sent = (expected as { body: Record<string, unknown> }).body;
    const created = res.json as Record<string, unknown>;
    assert.match(created['key'] as string, API_KEY_PATTERN);
    assert.equal(
      { tenant: created['tenant'], scopes: created['scopes'], name: created['name'], revokedAt: created['revokedAt'] },
      { tenant: sent['tenant'], scopes: [...new Set(sent['scopes'] as string[])], name: sent['name'] ?? '', revokedAt: null },
    );
    const listed = await send(ctx, { method: 'GET', target: `${KEYS}?tenant=${sent['tenant'] as string}`, headers: [bearer(key)] });
    assert.ok((listed.json.items as { id: string }[]).some((k) => k.id === created['id']), 'a created key is listed');
  });
  await assertHealthy(ctx, 'keys-admin', key);
});

test('GET /tasks: query strings (repeats, junk limits, garbage cursors, invalid percent-encoding) get 200 with the right page, or 400', async (ctx) => {
  const key = await keyFor(ctx, 'lister');
  for (const [i, type] of ['echo', 'sleep', 'fail', 'echo', 'echo', 'sleep', 'fail', 'echo', 'sleep', 'echo', 'fail', 'echo'].entries()) {
    const payload = type === 'sleep' ? { ms: i } : type === 'fail' ? { message: `m${i}` } : { i };
    const body = { type, payload, ...(i % 3 === 0 ? { runAt: '2999-01-01T00:00:00.000Z' } : {}) };
    const res = await submit(ctx, 'lister', key, postTask(key, JSON.stringify(body)), { status: 'created', body, payload });
    if (i % 4 === 1) assert.is((await send(ctx, { method: 'POST', target: `${TASKS}/${res.json.id}/cancel`, headers: [bearer(key)] })).status, 200);
  }
  const page = await send(ctx, { method: 'GET', target: `${TASKS}?limit=4`, headers: [bearer(key)] });
  const cursors = [page.json.nextCursor as string];
  await check(requests.queryCase(cursors), 600, async (query) => {
    const res = await send(ctx, { method: 'GET', target: `${TASKS}${query}`, headers: [bearer(key)] });
    const verdict = listVerdict(query.slice(1));
    assert.is(res.status, verdict ? 200 : 400, `GET ${TASKS}${query}: ${res.text.slice(0, 300)}`);
    if (!verdict) return;
    const items = res.json.items as { id: string; type: string; status: string; tenant: string }[];
    const expected = [...ledger.tasks]
      .filter(([id, t]) => t.tenant === 'lister' && !ledger.deleted.has(id) && (verdict.type === undefined || t.type === verdict.type))
      .map(([id]) => id)
      .filter((id) => verdict.before === undefined || id < verdict.before)
      .sort()
      .reverse();
    const ids = items.map((t) => t.id);
    if (verdict.status === undefined) assert.equal(ids, expected.slice(0, verdict.limit), `GET ${TASKS}${query}: the page`);
    else assert.ok(ids.every((id) => expected.includes(id)) && items.every((t) => t.status === verdict.status), `GET ${TASKS}${query}: filtered`);
    assert.ok(ids.every((id, i) => i === 0 || (ids[i - 1] as string) > id), 'newest first');
    if (res.json.nextCursor !== null) {
      assert.is(ids.length, verdict.limit, 'a next cursor only after a full page');
      cursors.push(res.json.nextCursor as string);
    }
  });
  await assertHealthy(ctx, 'lister', key);
});

test('/:id routes: junk, encoded, long, UUID-like and unknown ids on every route and method get 400, 404, 405 or 501', async (ctx) => {
  const key = await keyFor(ctx, 'paths');
  await check(requests.pathCase, 800, async ({ route, segment }) => {
    const res = await send(ctx, { method: route.method, target: route.path(segment), headers: [bearer(key)] });
    const what = `${route.method} ${route.path(segment).slice(0, 160)}`;
    if (route.expect === 'id') {
      const id = requests.safeDecode(segment);
      const allowed = UUID.test(id) ? [404] : UUID_SHAPE.test(id) ? [400, 404] : [400];
      assert.ok(allowed.includes(res.status), `${what}: ${res.status}, expected ${allowed.join(' or ')}`);
    } else {
      assert.is(res.status, route.expect, `${what}: ${res.text.slice(0, 200)}`);
    }
  });
  await assertHealthy(ctx, 'paths', key);
});

test('/:id routes on real tasks: get, events, cancel, retry and delete in any order follow the state machine', async (ctx) => {
  const key = await keyFor(ctx, 'lifecycle');
  const auth = [bearer(key)];
  await check(requests.lifecycleCase, 80, async ({ dueNow, ops }) => {
    const tasks: { id: string; state: 'live' | 'cancelled' | 'deleted' }[] = [];
    for (const now of dueNow) {
      const body = { type: 'echo', payload: { now }, ...(now ? {} : { runAt: '2999-01-01T00:00:00.000Z' }) };
      const res = await submit(ctx, 'lifecycle', key, postTask(key, JSON.stringify(body)), { status: 'created', body, payload: body.payload });
      tasks.push({ id: res.json.id as string, state: 'live' });
    }
    for (const { op, target } of ops) {
      const task = tasks[target % tasks.length] as (typeof tasks)[number];
      const request = requests.lifecycleRequest(op, task.id, auth);
      const res = await send(ctx, request);
      const what = `${request.method} ${request.target} (${task.state}): ${res.text.slice(0, 200)}`;
      if (task.state === 'deleted') {
        assert.is(res.status, 404, what);
        continue;
      }
      const next = requests.lifecycleModel(op, task.state);
      assert.is(res.status, next.status, what);
      if (op === 'delete') ledger.deleted.add(task.id);
      task.state = next.state;
      if (res.status < 300 && (op === 'get' || op === 'cancel' || op === 'retry')) {
        const live = [TaskStatus.pending, TaskStatus.queued] as string[];
        assert.ok(task.state === 'cancelled' ? res.json.status === TaskStatus.cancelled : live.includes(res.json.status), what);
      }
      if (op === 'events') {
        const kinds = (res.json.items as { kind: string }[]).map((e) => e.kind);
        assert.is(kinds[0], 'submitted', what);
        if (task.state === 'cancelled') assert.is(kinds.at(-1), 'cancelled', what);
      }
    }
  });
  await assertHealthy(ctx, 'lifecycle', key);
});

test('POST /tasks: concurrent submits with one Idempotency-Key create one task', async (ctx) => {
  const key = await keyFor(ctx, 'racers');
  await check(requests.raceCase, 25, async ({ idempotencyKey, copies }) => {
    const body = { type: 'echo', payload: { idempotencyKey } };
    const request = postTask(key, JSON.stringify(body), [['Content-Type', 'application/json'], ['Idempotency-Key', idempotencyKey]]);
    const answers = await Promise.all(Array.from({ length: copies }, () => send(ctx, request)));
    const created = answers.filter((res) => res.status === 201);
    const known = ledger.idempotency.get(`racers\u0000${idempotencyKey}`);
    assert.is(created.length, known ? 0 : 1, 'exactly one 201');
    const ids = new Set(answers.map((res) => res.json.id as string));
    assert.is(ids.size, 1, `every answer names one task: ${[...ids].join(', ')}`);
    if (known) assert.ok(ids.has(known), 'the task the key created first');
    for (const res of created) record('racers', res.json);
  });
  await assertHealthy(ctx, 'racers', key);
});

test('afterwards: the database holds exactly the tasks answered 201, each with its submitted event, and the API logged no error', async (ctx) => {
  const rows = (
    await ctx.db.query<{ id: string; tenant: string; status: string; runAt: string; payload: unknown }>(
      'SELECT id, tenant, status::text, run_at::text AS "runAt", payload FROM tasks',
    )
  ).rows;
  const expected = [...ledger.tasks.keys()].filter((id) => !ledger.deleted.has(id)).sort();
  const unexpected = rows
    .filter((row) => !ledger.tasks.has(row.id) || ledger.deleted.has(row.id))
    .map((row) => ({ ...row, payload: JSON.stringify(row.payload).slice(0, 200) }));
  assert.equal(unexpected, [], 'rows no 201 answered for (or that a 204 deleted)');
  assert.equal(rows.map((row) => row.id).sort(), expected, 'every task answered 201 is stored');
  for (const row of rows) {
    assert.ok((Object.values(TaskStatus) as string[]).includes(row.status), `task ${row.id}: status ${row.status}`);
    const seen = ledger.tasks.get(row.id);
    assert.is(canonical(row.payload), canonical(seen?.payload), `task ${row.id}: the stored payload is the one answered`);
    assert.is(row.tenant, seen?.tenant, `task ${row.id}: tenant`);
  }
  const unsubmitted = await ctx.db.query(`
    SELECT t.id FROM tasks t WHERE (SELECT count(*) FROM task_events e WHERE e.task_id = t.id AND e.kind = 'submitted') <> 1
       OR (SELECT kind FROM task_events e WHERE e.task_id = t.id ORDER BY e.id LIMIT 1) IS DISTINCT FROM 'submitted'`);
  assert.equal(unsubmitted.rows, [], 'tasks whose history does not start with one submitted event');
  const keys = await ctx.db.query<{ n: string }>('SELECT count(*) AS n FROM api_keys');
  assert.is(Number(keys.rows[0]?.n), ledger.keysIssued, 'api_keys rows');
  // One line per kind of error, with how often and the first message, so that a flood stays readable.
  const kinds = new Map<string, { count: number; first: string }>();
  for (const line of ctx.log.errors()) {
    const err = (line['err'] ?? {}) as { type?: string; code?: string; message?: string };
    const kind = `${String(line.msg)}: ${err.type ?? '?'} (code ${err.code ?? '-'})`;
    const seen = kinds.get(kind) ?? { count: 0, first: `${err.message ?? ''}`.slice(0, 160) };
    kinds.set(kind, { ...seen, count: seen.count + 1 });
  }
  assert.equal([...kinds].map(([kind, { count, first }]) => `${count}× ${kind}, first: ${first}`), [], 'error lines the API logged');
  assert.equal(prototypeShape(), ctx.prototypes);
});

test.run();
