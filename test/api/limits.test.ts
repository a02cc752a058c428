// The API's limits and response headers, seen from a client: slow clients are cut off on time without holding
// the server, oversized requests are refused without being read, input PostgreSQL cannot store is a 4xx with
// nothing stored, and every kind of response carries the security headers.
import { connect, type Socket } from 'node:net';
import Koa from 'koa';
import pg from 'pg';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { Scope } from '../../services/core/src/auth/api-key.ts';
import type { Config } from '../../services/core/src/config.ts';
import { ConfigError } from '../../services/core/src/errors.ts';
import { STORABLE_LIMITS } from '../../services/core/src/storable.ts';
import { TASK_LIMITS } from '../../services/core/src/tasks/model.ts';
import { HttpServer } from '../../services/api/src/server.ts';
import { eventually, type HttpResult, request, TestWorld, testLog } from '../support/system.ts';

type Api = Awaited<ReturnType<TestWorld['startApi']>>;
type Ctx = {
  world: TestWorld;
  db: pg.Client;
  /** Defaults, authentication off. */
  main: Api;
  /** Short HTTP timeouts. */
  slow: Api;
  slowConfig: Config;
  /** A 2 KiB body limit. */
  small: Api;
  /** API keys required; docs and metrics private. */
  keyed: Api;
  /** API keys required; docs and metrics public. */
  open: Api;
  keys: { read: string; write: string; admin: string };
};
const test = suite<Ctx>('api: limits and security headers', {} as Ctx);

const TASKS = '/api/v1/tasks';
const PROBLEM = /^application\/problem\+json/;
const MiB = 1024 * 1024;
const SLOW_ENV = { HTTP_HEADERS_TIMEOUT_MS: '1500', HTTP_REQUEST_TIMEOUT_MS: '3000' };
const SMALL_ENV = { BODY_LIMIT_BYTES: '2048' };
// The server checks its timeouts every tenth of the shorter one; the rest is for a loaded machine.
const CUT_OFF_MARGIN_MS = 1_500;

test.before(async (ctx) => {
  ctx.world = await TestWorld.create();
  // One after another: the first start migrates the database the others share.
  ctx.main = await ctx.world.startApi();
  ctx.slow = await ctx.world.startApi(SLOW_ENV);
  ctx.slowConfig = ctx.world.config(SLOW_ENV);
  ctx.small = await ctx.world.startApi(SMALL_ENV);
  ctx.keyed = await ctx.world.startApi({ AUTH_MODE: 'apikey' });
  ctx.open = await ctx.world.startApi({ AUTH_MODE: 'apikey', PUBLIC_DOCS: 'true', PUBLIC_METRICS: 'true' });
  const key = async (scopes: Scope[]) => (await ctx.keyed.database.apiKeys().createKey({ tenant: 'acme', scopes })).secret;
  ctx.keys = { read: await key(['tasks:read']), write: await key(['tasks:read', 'tasks:write']), admin: await key(['admin']) };
  await eventually(async () => ctx.main.broker.connected, 10_000, 'the API to connect to RabbitMQ');
  ctx.db = new pg.Client({ connectionString: ctx.world.env['DATABASE_URL'] });
  await ctx.db.connect();
});

test.after(async (ctx) => {
  await ctx.db?.end();
  await ctx.world.teardown();
});

async function taskRows(db: pg.Client): Promise<number> {
  return Number((await db.query('SELECT count(*) AS n FROM tasks')).rows[0].n);
}

const bearer = (secret: string) => ({ authorization: `Bearer ${secret}` });

function assertProblem(res: HttpResult, status: number, context = '') {
  const where = `${context} ${res.status} ${res.text.slice(0, 300)}`;
  assert.is(res.status, status, where);
  assert.match(res.headers.get('content-type') ?? '', PROBLEM, where);
  assert.is(res.body?.status, status, where);
  assert.type(res.body?.type, 'string', where);
  assert.type(res.body?.detail, 'string', where);
}

/** A submit body of exactly `bytes` bytes: an echo task whose payload is a string of `x`. */
function submitOfSize(bytes: number): string {
  const empty = JSON.stringify({ type: 'echo', payload: '' });
  return JSON.stringify({ type: 'echo', payload: 'x'.repeat(bytes - empty.length) });
}

// ---- raw connections ----

/** A TCP connection to the API that the test drives byte by byte. */
type Raw = {
  socket: Socket;
  /** Just before connecting: the server's clock for the connection cannot have started earlier. */
  openedAt: number;
  connected: Promise<void>;
  /** When the server ended the connection, or null when the test gave up on it first. */
  closed: Promise<number | null>;
  received: () => string;
  /** Resolves with what was received once `done` holds for it; rejects if the connection closes first. */
  until: (done: (text: string) => boolean) => Promise<string>;
};

function rawConnection(baseUrl: string, giveUpMs: number): Raw {
  const { hostname, port } = new URL(baseUrl);
  const openedAt = performance.now();
  const socket = connect(Number(port), hostname);
  let text = '';
  let gaveUp = false;
  socket.setEncoding('latin1');
  socket.on('data', (chunk: string) => {
    text += chunk;
  });
  // A write racing the server's close fails with EPIPE/ECONNRESET; the close is what the tests look at.
  socket.on('error', () => undefined);
  const watchdog = setTimeout(() => {
    gaveUp = true;
    socket.destroy();
  }, giveUpMs);
  const closed = new Promise<number | null>((resolve) => {
    socket.once('close', () => {
      clearTimeout(watchdog);
      resolve(gaveUp ? null : performance.now());
    });
  });
  const connected = new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  const until = (done: (text: string) => boolean) =>
    new Promise<string>((resolve, reject) => {
      const check = () => {
        if (!done(text)) return;
        socket.off('data', check);
        resolve(text);
      };
      const closedFirst = () => (done(text) ? resolve(text) : reject(new Error(`connection closed; received ${JSON.stringify(text.slice(0, 200))}`)));
      if (socket.closed) return closedFirst();
      socket.on('data', check);
      socket.once('close', closedFirst);
      check();
    });
  return { socket, openedAt, connected, closed, received: () => text, until };
}

type RawResponse = { status: number; headers: Record<string, string>; body: string };

/** The first complete HTTP response in `text`, or null while it is incomplete. */
function parseResponse(text: string): RawResponse | null {
  const end = text.indexOf('\r\n\r\n');
  if (end === -1) return null;
  const [statusLine = '', ...lines] = text.slice(0, end).split('\r\n');
  const headers = Object.fromEntries(
    lines.map((line) => [line.slice(0, line.indexOf(':')).toLowerCase(), line.slice(line.indexOf(':') + 1).trim()]),
  );
  const length = Number(headers['content-length'] ?? 0);
  const body = text.slice(end + 4);
  if (body.length < length) return null;
  return { status: Number(statusLine.split(' ')[1]), headers, body: body.slice(0, length) };
}

/** Writes `line()` every `everyMs` until the connection closes or `stop()` says so. */
function dribble(raw: Raw, line: (n: number) => string, everyMs: number, stop: () => boolean = () => false): void {
  let n = 0;
  const timer = setInterval(() => {
    if (raw.socket.destroyed || !raw.socket.writable || stop()) clearInterval(timer);
    else raw.socket.write(line(n++));
  }, everyMs);
  raw.socket.once('close', () => clearInterval(timer));
}

/** A slow client: misbehaves once connected; `since` is no later than its timeout began, `from` is where the server's answer to it starts. */
type SlowClient = { kind: string; limit: 'headers' | 'request'; begin: (raw: Raw) => Promise<{ since: number; from: number }> };

const SLOW_CLIENTS: SlowClient[] = [
  {
    kind: 'sends nothing',
    limit: 'headers',
    begin: async (raw) => ({ since: raw.openedAt, from: 0 }),
  },
  {
    kind: 'dribbles its headers',
    limit: 'headers',
    begin: async (raw) => {
      raw.socket.write('GET /healthz HTTP/1.1\r\nHost: conveyor\r\n');
      dribble(raw, (n) => `X-Slow-${n}: y\r\n`, 100, () => raw.received() !== '');
      return { since: raw.openedAt, from: 0 };
    },
  },
  {
    kind: 'sends its headers, then dribbles the body',
    limit: 'request',
    begin: async (raw) => {
      raw.socket.write(`POST ${TASKS} HTTP/1.1\r\nHost: conveyor\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{`);
      dribble(raw, () => ' ', 100, () => raw.received() !== '');
      return { since: raw.openedAt, from: 0 };
    },
  },
  {
    kind: 'makes one request, then dribbles the next one on the kept-alive connection',
    limit: 'headers',
    begin: async (raw) => {
      raw.socket.write('GET /healthz HTTP/1.1\r\nHost: conveyor\r\n\r\n');
      const first = parseResponse(await raw.until((text) => parseResponse(text) !== null));
      assert.is(first?.status, 200, 'the first request on the connection is served');
      const from = raw.received().length;
      const since = performance.now();
      raw.socket.write('GET /healthz HTTP/1.1\r\n');
      dribble(raw, (n) => `X-Slow-${n}: y\r\n`, 100, () => raw.received().length > from);
      return { since, from };
    },
  },
];

type SlowRun = { client: SlowClient; raw: Raw; begun: Promise<{ since: number; from: number }> };

function startSlow(api: Api, client: SlowClient, config: Config): SlowRun {
  const raw = rawConnection(api.baseUrl, config.httpRequestTimeoutMs + 10_000);
  return { client, raw, begun: raw.connected.then(() => client.begin(raw)) };
}

/** The server cut the client off with a 408 (or at least a close), after its timeout and within the margin. */
async function assertCutOff(run: SlowRun, config: Config, label: string) {
  const { since, from } = await run.begun;
  const closedAt = await run.raw.closed;
  const limitMs = run.client.limit === 'headers' ? config.httpHeadersTimeoutMs : config.httpRequestTimeoutMs;
  const where = `${label} (${run.client.kind})`;
  assert.ok(closedAt !== null, `${where}: the server never closed the connection`);
  const elapsed = closedAt - since;
  assert.ok(elapsed >= limitMs * 0.9, `${where}: cut off after ${elapsed.toFixed(0)} ms, before its ${limitMs} ms limit`);
  assert.ok(elapsed <= limitMs + CUT_OFF_MARGIN_MS, `${where}: cut off after ${elapsed.toFixed(0)} ms; limit ${limitMs} ms`);
  const answer = run.raw.received().slice(from);
  // A dribbled byte racing the close can reset the connection before the 408 is read; a close alone still counts.
  assert.ok(answer === '' || answer.startsWith('HTTP/1.1 408 '), `${where}: answered ${JSON.stringify(answer.slice(0, 80))}`);
}

// ---- slow clients ----

test('slow clients are answered 408 and disconnected on time, while a normal request is served at once', async ({ slow, slowConfig }) => {
  assert.is((await request(slow.baseUrl, 'GET', '/healthz')).status, 200);
  const runs = SLOW_CLIENTS.map((client) => startSlow(slow, client, slowConfig));
  await Promise.all(runs.map((run) => run.begun));
  const res = await request(slow.baseUrl, 'GET', '/healthz');
  assert.is(res.status, 200);
  const cut = runs.filter((run) => run.raw.socket.closed).map((run) => run.client.kind);
  assert.equal(cut, [], 'the normal request was answered while every slow client still held its connection');
  for (const run of runs) await assertCutOff(run, slowConfig, 'alongside a normal request');
  // The one that sent nothing cannot have lost the answer to a racing write.
  assert.ok(runs[0]?.raw.received().startsWith('HTTP/1.1 408 Request Timeout'), runs[0]?.raw.received());
});

test('50 slow connections at once do not keep a normal submit from succeeding', async ({ slow, slowConfig, db }) => {
  const before = await taskRows(db);
  const runs = Array.from({ length: 50 }, (_, i) => startSlow(slow, SLOW_CLIENTS[i % 3] as SlowClient, slowConfig));
  await Promise.all(runs.map((run) => run.begun));
  const submit = await request(slow.baseUrl, 'POST', TASKS, { type: 'echo', payload: { during: 'slowloris' } });
  const health = await request(slow.baseUrl, 'GET', '/healthz');
  const stillOpen = runs.filter((run) => !run.raw.socket.closed).length;
  assert.is(submit.status, 201, submit.text);
  assert.is(health.status, 200);
  assert.is(stillOpen, 50, 'served while every slow connection was still open');
  assert.is(await taskRows(db), before + 1);
  for (const [i, run] of runs.entries()) await assertCutOff(run, slowConfig, `connection ${i}`);
  assert.is((await request(slow.baseUrl, 'GET', '/healthz')).status, 200, 'still serving afterwards');
});

test('a request timeout shorter than the headers timeout is refused by the configuration, or honoured: never a crash at start', async ({ world }) => {
  // Node refuses a headersTimeout longer than the requestTimeout when the server is created. Setting only
  // HTTP_REQUEST_TIMEOUT_MS=5000 leaves the headers timeout at its default of 10 s.
  let config: Config;
  try {
    config = world.config({ HTTP_REQUEST_TIMEOUT_MS: '5000' });
  } catch (error) {
    assert.instance(error, ConfigError);
    assert.match((error as Error).message, /HTTP_(HEADERS|REQUEST)_TIMEOUT_MS/);
    return;
  }
  let server: HttpServer | null = null;
  try {
    server = new HttpServer(new Koa(), config, testLog);
  } catch (error) {
    assert.unreachable(`the configuration was accepted but the HTTP server refused it: ${(error as Error).message}`);
  }
  await server?.start();
  await server?.stop();
});

// ---- oversized requests ----

test('a body of the limit is accepted; one byte more is a 413 problem and nothing is stored', async ({ world, main, db }) => {
  const limit = world.config().bodyLimitBytes;
  assert.is(limit, MiB, 'the default limit');
  const exact = await request(main.baseUrl, 'POST', TASKS, submitOfSize(limit));
  assert.is(exact.status, 201, exact.text.slice(0, 200));
  assert.is((exact.body.payload as string).length, limit - JSON.stringify({ type: 'echo', payload: '' }).length);
  const before = await taskRows(db);
  const over = await request(main.baseUrl, 'POST', TASKS, submitOfSize(limit + 1));
  assertProblem(over, 413, 'limit + 1');
  assert.is(await taskRows(db), before);
  assert.is((await request(main.baseUrl, 'GET', '/healthz')).status, 200);
});

test('a body declared larger than the limit is refused at once, before the server has read it', async ({ world, main, db }) => {
  const before = await taskRows(db);
  const requestTimeoutMs = world.config().httpRequestTimeoutMs;
  const raw = rawConnection(main.baseUrl, requestTimeoutMs / 3);
  await raw.connected;
  const started = performance.now();
  // Headers and a few bytes of a 10 MiB body that never comes: only a refusal from the headers can answer this
  // long before the request timeout would.
  raw.socket.write(`POST ${TASKS} HTTP/1.1\r\nHost: conveyor\r\nContent-Type: application/json\r\nContent-Length: ${10 * MiB}\r\n\r\n{"type":"echo","payload":"`);
  const response = parseResponse(await raw.until((text) => parseResponse(text) !== null));
  const elapsed = performance.now() - started;
  raw.socket.destroy();
  assert.is(response?.status, 413, JSON.stringify(response));
  assert.match(response?.headers['content-type'] ?? '', PROBLEM);
  assert.is(JSON.parse(response?.body ?? '{}').status, 413);
  assert.ok(elapsed < requestTimeoutMs / 3, `answered after ${elapsed.toFixed(0)} ms`);
  assert.is(await taskRows(db), before);
});

test('a chunked body is read as JSON, and refused with 413 once it grows past the limit', async ({ main, db }) => {
  const small = rawConnection(main.baseUrl, 10_000);
  await small.connected;
  const body = JSON.stringify({ type: 'echo', payload: { chunked: true } });
  small.socket.write(`POST ${TASKS} HTTP/1.1\r\nHost: conveyor\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n`);
  small.socket.write(`${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`);
  const accepted = parseResponse(await small.until((text) => parseResponse(text) !== null));
  small.socket.destroy();
  assert.is(accepted?.status, 201, JSON.stringify(accepted));

  const before = await taskRows(db);
  const big = rawConnection(main.baseUrl, 10_000);
  await big.connected;
  big.socket.write(`POST ${TASKS} HTTP/1.1\r\nHost: conveyor\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n`);
  const chunk = `{"type":"echo","payload":"${'x'.repeat(64 * 1024)}`;
  // Past 1 MiB, and never finished: the refusal cannot wait for the end of the body.
  for (let sent = 0; sent <= MiB; sent += chunk.length) big.socket.write(`${chunk.length.toString(16)}\r\n${chunk}\r\n`);
  const refused = parseResponse(await big.until((text) => parseResponse(text) !== null));
  big.socket.destroy();
  assert.is(refused?.status, 413, JSON.stringify(refused));
  assert.match(refused?.headers['content-type'] ?? '', PROBLEM);
  assert.is(await taskRows(db), before);
});

test('the body limit follows BODY_LIMIT_BYTES', async ({ small, db }) => {
  const limit = Number(SMALL_ENV.BODY_LIMIT_BYTES);
  assert.is((await request(small.baseUrl, 'POST', TASKS, submitOfSize(limit))).status, 201);
  const before = await taskRows(db);
  const over = await request(small.baseUrl, 'POST', TASKS, submitOfSize(limit + 1));
  assertProblem(over, 413, 'limit + 1');
  assert.match(over.body.detail, /too large/);
  assert.is(await taskRows(db), before);
});

test('headers over 16 KiB are refused with 431 and the connection closed; the server keeps serving', async ({ main }) => {
  const underLimit = await request(main.baseUrl, 'GET', '/healthz', undefined, { 'x-big': 'a'.repeat(15 * 1024) });
  assert.is(underLimit.status, 200, 'headers just under 16 KiB are fine');
  const raw = rawConnection(main.baseUrl, 10_000);
  await raw.connected;
  raw.socket.write(`GET /healthz HTTP/1.1\r\nHost: conveyor\r\nX-Big: ${'a'.repeat(17 * 1024)}\r\n\r\n`);
  const closedAt = await raw.closed;
  assert.ok(closedAt !== null, 'the server closed the connection');
  assert.ok(raw.received().startsWith('HTTP/1.1 431 '), raw.received());
  assert.is((await request(main.baseUrl, 'GET', '/healthz')).status, 200);
});

// ---- input PostgreSQL cannot store, and out-of-range values ----

/** `levels` objects `{a: …}` nested in one another. */
function nested(levels: number, leaf: unknown = 1): unknown {
  let value = leaf;
  for (let i = 0; i < levels; i++) value = { a: value };
  return value;
}

test('nesting: 32 levels are stored, 33 are a 422 whose error points into the payload', async ({ main, db }) => {
  const ok = await request(main.baseUrl, 'POST', TASKS, { type: 'echo', payload: nested(STORABLE_LIMITS.maxDepth) });
  assert.is(ok.status, 201, ok.text);
  assert.equal(ok.body.payload, nested(STORABLE_LIMITS.maxDepth));
  const before = await taskRows(db);
  const deep = await request(main.baseUrl, 'POST', TASKS, { type: 'echo', payload: nested(STORABLE_LIMITS.maxDepth + 1) });
  assertProblem(deep, 422);
  assert.equal(deep.body.errors, [{ path: `payload${'.a'.repeat(STORABLE_LIMITS.maxDepth)}`, message: 'nesting is deeper than 32 levels' }]);
  assert.is(await taskRows(db), before);
});

/** A body sent as written, for JSON that JSON.stringify would never produce. */
const rawJson = (text: string) => text;

/** Requests that must be refused, with the status and the `errors` path of the field at fault. */
const REFUSED: { name: string; method: 'GET' | 'POST'; path: string; body?: unknown; status: number; field: string | RegExp }[] = [
  { name: 'NUL in a payload string', method: 'POST', path: TASKS, body: { type: 'echo', payload: { s: 'a\u0000b' } }, status: 422, field: 'payload.s' },
  { name: 'NUL in a payload key', method: 'POST', path: TASKS, body: { type: 'echo', payload: { ok: { 'k\u0000': 1 } } }, status: 422, field: 'payload.ok.k\u0000' },
  { name: 'NUL in an array item', method: 'POST', path: TASKS, body: { type: 'echo', payload: ['fine', '\u0000'] }, status: 422, field: 'payload.1' },
  { name: 'lone surrogate in a string', method: 'POST', path: TASKS, body: rawJson('{"type":"echo","payload":{"s":"\\ud800"}}'), status: 422, field: 'payload.s' },
  { name: 'lone surrogate in a key', method: 'POST', path: TASKS, body: rawJson('{"type":"echo","payload":{"\\udc00":1}}'), status: 422, field: /^payload\./ },
  { name: '1e400', method: 'POST', path: TASKS, body: rawJson('{"type":"echo","payload":{"n":1e400}}'), status: 422, field: 'payload.n' },
  { name: '-1e400 in an array', method: 'POST', path: TASKS, body: rawJson('{"type":"echo","payload":[0,-1e400]}'), status: 422, field: 'payload.1' },
  { name: 'NUL in idempotencyKey', method: 'POST', path: TASKS, body: { type: 'echo', idempotencyKey: 'key\u0000' }, status: 422, field: 'idempotencyKey' },
  { name: 'lone surrogate in idempotencyKey', method: 'POST', path: TASKS, body: rawJson('{"type":"echo","idempotencyKey":"k\\udfff"}'), status: 422, field: 'idempotencyKey' },
  { name: 'idempotencyKey of 201 characters', method: 'POST', path: TASKS, body: { type: 'echo', idempotencyKey: 'k'.repeat(TASK_LIMITS.maxIdempotencyKeyLength + 1) }, status: 422, field: 'idempotencyKey' },
  { name: 'priority 10', method: 'POST', path: TASKS, body: { type: 'echo', priority: TASK_LIMITS.maxPriority + 1 }, status: 422, field: 'priority' },
  { name: 'priority -1', method: 'POST', path: TASKS, body: { type: 'echo', priority: -1 }, status: 422, field: 'priority' },
  { name: 'maxAttempts 101', method: 'POST', path: TASKS, body: { type: 'echo', maxAttempts: TASK_LIMITS.maxMaxAttempts + 1 }, status: 422, field: 'maxAttempts' },
  { name: 'maxAttempts 0', method: 'POST', path: TASKS, body: { type: 'echo', maxAttempts: 0 }, status: 422, field: 'maxAttempts' },
  { name: 'timeoutMs over a day', method: 'POST', path: TASKS, body: { type: 'echo', timeoutMs: TASK_LIMITS.maxTimeoutMs + 1 }, status: 422, field: 'timeoutMs' },
  { name: 'limit=0', method: 'GET', path: `${TASKS}?limit=0`, status: 400, field: 'limit' },
  { name: 'limit=501', method: 'GET', path: `${TASKS}?limit=501`, status: 400, field: 'limit' },
  { name: 'limit=abc', method: 'GET', path: `${TASKS}?limit=abc`, status: 400, field: 'limit' },
  { name: 'limit=1.5', method: 'GET', path: `${TASKS}?limit=1.5`, status: 400, field: 'limit' },
  { name: 'NUL in the type filter', method: 'GET', path: `${TASKS}?type=echo%00`, status: 400, field: 'type' },
];

test('unstorable or out-of-range input is a 4xx problem naming the field, and stores nothing', async ({ main, db }) => {
  for (const { name, method, path, body, status, field } of REFUSED) {
    const before = await taskRows(db);
    const res = await request(main.baseUrl, method, path, body);
    assertProblem(res, status, name);
    const paths: string[] = (res.body.errors ?? []).map((error: { path: string }) => error.path);
    const matches = (p: string) => (typeof field === 'string' ? p === field : field.test(p));
    assert.ok(paths.some(matches), `${name}: errors at ${JSON.stringify(paths)}`);
    assert.is(await taskRows(db), before, `${name}: nothing stored`);
  }
});

test('the same fields at their limits are accepted, and emoji (surrogate pairs) are stored intact', async ({ main }) => {
  const accepted: unknown[] = [
    { type: 'echo', priority: TASK_LIMITS.maxPriority, maxAttempts: TASK_LIMITS.maxMaxAttempts, timeoutMs: TASK_LIMITS.maxTimeoutMs },
    { type: 'echo', priority: TASK_LIMITS.minPriority, maxAttempts: 1, timeoutMs: 1 },
    { type: 'echo', idempotencyKey: `${'k'.repeat(TASK_LIMITS.maxIdempotencyKeyLength - 2)}😀` },
    { type: 'echo', payload: { '😀 key': ['👩‍👩‍👧', 'a\ud83d\ude00b'], n: 1e308 } },
  ];
  for (const body of accepted) {
    const res = await request(main.baseUrl, 'POST', TASKS, body);
    assert.is(res.status, 201, `${JSON.stringify(body).slice(0, 80)}: ${res.text.slice(0, 200)}`);
    const stored = await request(main.baseUrl, 'GET', `${TASKS}/${res.body.id}`);
    for (const [field, value] of Object.entries(body as Record<string, unknown>)) assert.equal(stored.body[field], value, field);
  }
  for (const limit of [1, 500]) assert.is((await request(main.baseUrl, 'GET', `${TASKS}?limit=${limit}`)).status, 200, `limit=${limit}`);
});

test('a payload nested 100,000 levels deep is a quick 422, and the server is unharmed', async ({ main, db }) => {
  const before = await taskRows(db);
  const levels = 100_000;
  const started = performance.now();
  const res = await request(main.baseUrl, 'POST', TASKS, `{"type":"echo","payload":${'['.repeat(levels)}${']'.repeat(levels)}}`);
  const elapsed = performance.now() - started;
  assertProblem(res, 422);
  assert.match(res.body.detail, /deeper than 32 levels/);
  assert.ok(elapsed < 5_000, `${elapsed.toFixed(0)} ms`);
  assert.is(await taskRows(db), before);
  assert.is((await request(main.baseUrl, 'GET', '/healthz')).status, 200);
});

test('a payload with thousands of bad keys gets a short problem, not one error per key', async ({ main, db }) => {
  // One object of 5,000 keys holding NUL: 60 KiB in. The problem should list a few of them (the storable
  // report limit is 5), not all 5,000; otherwise a 1 MiB body buys a response of several megabytes.
  const keys = Array.from({ length: 5_000 }, (_, i) => `"\\u0000${i}":0`).join(',');
  const before = await taskRows(db);
  const res = await request(main.baseUrl, 'POST', TASKS, `{"type":"echo","payload":{${keys}}}`);
  assertProblem(res, 422);
  assert.ok(res.body.errors.length <= 5, `${res.body.errors.length} errors`);
  assert.ok(res.text.length < 16 * 1024, `${res.text.length} bytes of problem for a 60 KiB request`);
  assert.is(await taskRows(db), before);
});

// ---- security headers ----

const COMMON_HEADERS = {
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
};

/** The Content-Security-Policy header as directive → sources. */
function csp(res: HttpResult): Map<string, string[]> {
  const header = res.headers.get('content-security-policy') ?? '';
  return new Map(
    header
      .split(';')
      .map((part) => part.trim().split(/\s+/))
      .filter((words) => words[0])
      .map(([name, ...sources]) => [name as string, sources]),
  );
}

type Expect = { policy: 'api' | 'docs'; cacheable?: boolean };

function assertSecurityHeaders(res: HttpResult, label: string, { policy, cacheable = false }: Expect) {
  const where = `${label} (${res.status})`;
  for (const [name, value] of Object.entries(COMMON_HEADERS)) assert.is(res.headers.get(name), value, `${where}: ${name}`);
  const directives = csp(res);
  assert.equal(directives.get('default-src'), ["'none'"], `${where}: default-src`);
  assert.equal(directives.get('frame-ancestors'), ["'none'"], `${where}: frame-ancestors`);
  if (policy === 'api') {
    // JSON needs nothing: every directive is 'none'.
    for (const [name, sources] of directives) assert.equal(sources, ["'none'"], `${where}: ${name}`);
  } else {
    assert.equal(directives.get('script-src'), ["'self'"], `${where}: scripts from the API itself only, none inline`);
    for (const [name, sources] of directives) {
      for (const source of sources) assert.ok(!["'unsafe-eval'", '*', 'http:', 'https:'].includes(source), `${where}: ${name} ${source}`);
    }
  }
  const cache = res.headers.get('cache-control') ?? '';
  if (cacheable) {
    assert.not.match(cache, /no-store/, `${where}: cacheable`);
    assert.ok(Number(/max-age=(\d+)/.exec(cache)?.[1] ?? 0) > 0, `${where}: cache-control ${cache}`);
  } else {
    assert.is(cache, 'no-store', `${where}: cache-control`);
  }
  assert.is(res.headers.get('strict-transport-security'), null, `${where}: no HSTS over plain HTTP`);
}

test('every kind of response carries the security headers', async ({ main, small, keyed, keys }) => {
  const created = await request(main.baseUrl, 'POST', TASKS, { type: 'echo' });
  const cases: [string, HttpResult, number, Expect][] = [
    ['list', await request(main.baseUrl, 'GET', TASKS), 200, { policy: 'api' }],
    ['submit', created, 201, { policy: 'api' }],
    ['delete', await request(main.baseUrl, 'DELETE', `${TASKS}/${created.body.id}`), 204, { policy: 'api' }],
    ['bad query', await request(main.baseUrl, 'GET', `${TASKS}?limit=abc`), 400, { policy: 'api' }],
    ['malformed JSON', await request(main.baseUrl, 'POST', TASKS, '{"type":'), 400, { policy: 'api' }],
    ['no key', await request(keyed.baseUrl, 'GET', TASKS), 401, { policy: 'api' }],
    ['missing scope', await request(keyed.baseUrl, 'POST', TASKS, { type: 'echo' }, bearer(keys.read)), 403, { policy: 'api' }],
    ['no route', await request(main.baseUrl, 'GET', '/nowhere'), 404, { policy: 'api' }],
    ['no task', await request(main.baseUrl, 'GET', `${TASKS}/01900000-0000-7000-8000-000000000000`), 404, { policy: 'api' }],
    ['wrong method', await request(main.baseUrl, 'PUT', TASKS), 405, { policy: 'api' }],
    ['unknown method', await request(main.baseUrl, 'PROPFIND', TASKS), 501, { policy: 'api' }],
    ['too large', await request(small.baseUrl, 'POST', TASKS, submitOfSize(4096)), 413, { policy: 'api' }],
    ['not JSON', await request(main.baseUrl, 'POST', TASKS, 'hello', { 'content-type': 'text/plain' }), 415, { policy: 'api' }],
    ['invalid', await request(main.baseUrl, 'POST', TASKS, { type: 'echo', priority: 10 }), 422, { policy: 'api' }],
    ['options', await request(main.baseUrl, 'OPTIONS', TASKS), 200, { policy: 'api' }],
    ['healthz', await request(main.baseUrl, 'GET', '/healthz'), 200, { policy: 'api' }],
    ['readyz', await request(main.baseUrl, 'GET', '/readyz'), 200, { policy: 'api' }],
    ['metrics', await request(main.baseUrl, 'GET', '/metrics'), 200, { policy: 'api' }],
    ['openapi.json', await request(main.baseUrl, 'GET', '/openapi.json'), 200, { policy: 'api' }],
    ['docs', await request(main.baseUrl, 'GET', '/docs'), 200, { policy: 'docs' }],
    ['docs init', await request(main.baseUrl, 'GET', '/docs/init.js'), 200, { policy: 'docs' }],
    ['docs css', await request(main.baseUrl, 'GET', '/docs/swagger-ui.css'), 200, { policy: 'docs', cacheable: true }],
    ['docs bundle', await request(main.baseUrl, 'GET', '/docs/swagger-ui-bundle.js'), 200, { policy: 'docs', cacheable: true }],
    ['docs unknown asset', await request(main.baseUrl, 'GET', '/docs/index.js'), 404, { policy: 'docs' }],
  ];
  for (const [label, res, status, expect] of cases) {
    assert.is(res.status, status, `${label}: ${res.text.slice(0, 200)}`);
    assertSecurityHeaders(res, label, expect);
  }
});

test('the docs page runs only its own script files: no inline script for the CSP to block', async ({ main }) => {
  const page = await request(main.baseUrl, 'GET', '/docs');
  const scripts = [...page.text.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/gi)];
  assert.ok(scripts.length > 0, 'the page loads scripts');
  for (const [tag, attributes = '', content = ''] of scripts) {
    const src = /\bsrc="([^"]+)"/.exec(attributes)?.[1];
    assert.ok(src?.startsWith('/docs/'), `${tag}: served by the API itself`);
    assert.is(content.trim(), '', `${tag}: no inline code`);
    const script = await request(main.baseUrl, 'GET', src as string);
    assert.is(script.status, 200, src);
    assert.match(script.headers.get('content-type') ?? '', /javascript/, src);
  }
  assert.not.match(page.text, /\son[a-z]+\s*=/i, 'no inline event handlers');
  assert.not.match(page.text, /javascript:/i, 'no javascript: URLs');
});

test('HSTS only when the request came over HTTPS (X-Forwarded-Proto: https)', async ({ main }) => {
  const HSTS = /^max-age=(\d+)/;
  for (const path of ['/healthz', TASKS, '/nowhere', '/docs']) {
    const https = await request(main.baseUrl, 'GET', path, undefined, { 'x-forwarded-proto': 'https' });
    const maxAge = Number(HSTS.exec(https.headers.get('strict-transport-security') ?? '')?.[1] ?? 0);
    assert.ok(maxAge >= 31_536_000, `${path} over https: ${https.headers.get('strict-transport-security')}`);
    const http = await request(main.baseUrl, 'GET', path, undefined, { 'x-forwarded-proto': 'http' });
    assert.is(http.headers.get('strict-transport-security'), null, `${path} over http`);
    assert.is((await request(main.baseUrl, 'GET', path)).headers.get('strict-transport-security'), null, `${path} direct`);
  }
});

// ---- who may read /docs and /metrics ----

test('with API keys, /docs and /metrics need a key: docs any valid key, metrics an admin key', async ({ keyed, keys }) => {
  for (const path of ['/docs', '/openapi.json', '/docs/swagger-ui.css', '/metrics']) {
    const res = await request(keyed.baseUrl, 'GET', path);
    assertProblem(res, 401, `${path} without a key`);
    assertSecurityHeaders(res, path, { policy: path.startsWith('/docs') ? 'docs' : 'api' });
    assertProblem(await request(keyed.baseUrl, 'GET', path, undefined, bearer(`cvy_${'A'.repeat(43)}`)), 401, `${path} unknown key`);
  }
  for (const path of ['/docs', '/openapi.json', '/docs/swagger-ui.css']) {
    assert.is((await request(keyed.baseUrl, 'GET', path, undefined, bearer(keys.read))).status, 200, `${path} with tasks:read`);
  }
  const notAdmin = await request(keyed.baseUrl, 'GET', '/metrics', undefined, bearer(keys.write));
  assertProblem(notAdmin, 403, '/metrics with tasks:read+tasks:write');
  assert.not.match(notAdmin.text, /conveyor_http_requests_total/);
  const admin = await request(keyed.baseUrl, 'GET', '/metrics', undefined, bearer(keys.admin));
  assert.is(admin.status, 200);
  assert.match(admin.text, /^# HELP conveyor_/m);
  assertSecurityHeaders(admin, '/metrics as admin', { policy: 'api' });
});

test('PUBLIC_DOCS and PUBLIC_METRICS open /docs and /metrics to anyone, and nothing else', async ({ open }) => {
  for (const path of ['/docs', '/docs/init.js', '/docs/swagger-ui.css', '/openapi.json', '/metrics', '/healthz']) {
    const res = await request(open.baseUrl, 'GET', path);
    assert.is(res.status, 200, `${path}: ${res.text.slice(0, 200)}`);
  }
  assert.match((await request(open.baseUrl, 'GET', '/metrics')).text, /^# HELP conveyor_/m);
  assertProblem(await request(open.baseUrl, 'GET', TASKS), 401, 'list');
  assertProblem(await request(open.baseUrl, 'POST', TASKS, { type: 'echo' }), 401, 'submit');
  assertProblem(await request(open.baseUrl, 'GET', '/docsx'), 401, 'a path that only starts like /docs');
});

test.run();
