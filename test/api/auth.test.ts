import { randomUUID } from 'node:crypto';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { newApiKey, Scope } from '../../services/core/src/auth/api-key.ts';
import { newId } from '../../services/core/src/ids.ts';
import { TaskStatus } from '../../services/core/src/tasks/state.ts';
import { apiKeyRows, assertProblem, bearer, KEYS, makeKey, sqlRows, type StartedApi, TASKS, type TestKey } from '../support/keys.ts';
import { eventually, type HttpResult, request, TestWorld } from '../support/system.ts';

/** The tenant whose tasks the refused requests aim at, and the tenant next door. */
const OWNER = 'acme';
const OTHER = 'globex';

type Keys = {
  /** acme: tasks:read + tasks:write. */
  rw: TestKey;
  ro: TestKey;
  wo: TestKey;
  adminOnly: TestKey;
  /** acme, every scope, revoked through the admin endpoint after it was seen to work. */
  revoked: TestKey;
  /** globex, every scope. */
  other: TestKey;
  /** acme, the key the DELETE /api/v1/keys/:id requests aim at; it must stay active. */
  victim: TestKey;
};

type Ctx = {
  world: TestWorld;
  api: StartedApi;
  baseUrl: string;
  keys: Keys;
  /** In the victims' payloads: no refusal may contain it. */
  marker: string;
  /** An acme task that a cancel or delete would change (queued). */
  live: string;
  /** An acme task that a retry or delete would change (cancelled). */
  cancelled: string;
};

const test = suite<Ctx>('api: authentication, scopes and tenants');

test.before(async (ctx) => {
  ctx.world = await TestWorld.create();
  // No rate limit: the matrix sends many requests with one key (test/api/keys.test.ts covers the limit).
  ctx.api = await ctx.world.startApi({ AUTH_MODE: 'apikey', RATE_LIMIT_PER_SECOND: '0' });
  ctx.baseUrl = ctx.api.baseUrl;
  await eventually(async () => ctx.api.broker.connected, 10_000, 'the API to connect to RabbitMQ');
  const { tasksRead: read, tasksWrite: write, admin } = Scope;
  ctx.keys = {
    rw: await makeKey(ctx.api, OWNER, [read, write], 'rw'),
    ro: await makeKey(ctx.api, OWNER, [read], 'ro'),
    wo: await makeKey(ctx.api, OWNER, [write], 'wo'),
    adminOnly: await makeKey(ctx.api, OWNER, [admin], 'admin'),
    revoked: await makeKey(ctx.api, OWNER, [read, write, admin], 'revoked'),
    other: await makeKey(ctx.api, OTHER, [read, write, admin], 'other'),
    victim: await makeKey(ctx.api, OWNER, [read], 'victim'),
  };
  assert.is((await request(ctx.baseUrl, 'GET', TASKS, undefined, ctx.keys.revoked.headers)).status, 200, 'the key to revoke works first');
  const revoke = await request(ctx.baseUrl, 'DELETE', `${KEYS}/${ctx.keys.revoked.id}`, undefined, ctx.keys.adminOnly.headers);
  assert.is(revoke.status, 200, revoke.text);

  ctx.marker = `marker-${randomUUID()}`;
  const submit = () => request(ctx.baseUrl, 'POST', TASKS, { type: 'echo', payload: { marker: ctx.marker } }, ctx.keys.rw.headers);
  const live = await submit();
  assert.is(live.body.status, TaskStatus.queued, live.text);
  ctx.live = live.body.id;
  const cancelled = await submit();
  const cancel = await request(ctx.baseUrl, 'POST', `${TASKS}/${cancelled.body.id}/cancel`, undefined, ctx.keys.rw.headers);
  assert.is(cancel.body.status, TaskStatus.cancelled, cancel.text);
  ctx.cancelled = cancelled.body.id;
});

test.after(async (ctx) => {
  await ctx.world.teardown();
});

type Target = 'live' | 'cancelled' | 'key';

/** One endpoint of the API; `scope` null: any valid key will do. `tenantBound`: what it shows or changes belongs to a tenant. */
type Endpoint = Readonly<{ method: string; path: (id: string) => string; body?: unknown; scope: Scope | null; target?: Target; tenantBound: boolean }>;

function endpoints(marker: string): Endpoint[] {
  const { tasksRead: read, tasksWrite: write, admin } = Scope;
  return [
    { method: 'POST', path: () => TASKS, body: { type: 'echo', payload: { marker } }, scope: write, tenantBound: true },
    { method: 'POST', path: () => `${TASKS}/batch`, body: { tasks: [{ type: 'echo', payload: { marker } }] }, scope: write, tenantBound: true },
    { method: 'GET', path: () => TASKS, scope: read, tenantBound: true },
    { method: 'GET', path: (id) => `${TASKS}/${id}`, scope: read, target: 'live', tenantBound: true },
    { method: 'GET', path: (id) => `${TASKS}/${id}/events`, scope: read, target: 'live', tenantBound: true },
    { method: 'POST', path: (id) => `${TASKS}/${id}/cancel`, scope: write, target: 'live', tenantBound: true },
    { method: 'POST', path: (id) => `${TASKS}/${id}/retry`, scope: write, target: 'cancelled', tenantBound: true },
    { method: 'DELETE', path: (id) => `${TASKS}/${id}`, scope: write, target: 'live', tenantBound: true },
    { method: 'DELETE', path: (id) => `${TASKS}/${id}`, scope: write, target: 'cancelled', tenantBound: true },
    { method: 'POST', path: () => KEYS, body: { tenant: OWNER, scopes: [admin], name: 'minted' }, scope: admin, tenantBound: false },
    { method: 'GET', path: () => KEYS, scope: admin, tenantBound: false },
    { method: 'DELETE', path: (id) => `${KEYS}/${id}`, scope: admin, target: 'key', tenantBound: false },
    { method: 'GET', path: () => '/metrics', scope: admin, tenantBound: false },
    { method: 'GET', path: () => '/docs', scope: null, tenantBound: false },
    { method: 'GET', path: () => '/docs/init.js', scope: null, tenantBound: false },
    { method: 'GET', path: () => '/openapi.json', scope: null, tenantBound: false },
  ];
}

const nameOf = (endpoint: Endpoint) => `${endpoint.method} ${endpoint.path(':id')}`;

function targetId(ctx: Ctx, target: Target): string {
  return target === 'key' ? ctx.keys.victim.id : ctx[target];
}

function call(ctx: Ctx, endpoint: Endpoint, headers: Record<string, string>, id = ''): Promise<HttpResult> {
  return request(ctx.baseUrl, endpoint.method, endpoint.path(id), endpoint.body, headers);
}

/** What a refusal tells its caller, with the id it was about blanked out, so that two refusals can be compared. */
function seen(res: HttpResult, id: string) {
  const blank = (text: string) => (id === '' ? text : text.replaceAll(id, '{id}'));
  return { status: res.status, type: res.headers.get('content-type'), challenge: res.headers.get('www-authenticate'), body: blank(res.text) };
}

/** A refusal must say nothing about the victims: not their payload, type or tenant, nor the victim key's name. */
function assertNothingLeaked(ctx: Ctx, res: HttpResult, what: string): void {
  const headers = [...res.headers.entries()].map(([name, value]) => `${name}: ${value}`).join('\n');
  for (const secret of [ctx.marker, 'echo', OWNER, 'victim']) {
    assert.not.ok(res.text.includes(secret), `${what}: the body mentions '${secret}': ${res.text}`);
    assert.not.ok(headers.includes(secret), `${what}: a header mentions '${secret}':\n${headers}`);
  }
}

/**
 * Sends the endpoint's request with `headers` and hands each answer to `check`. For an endpoint about one
 * task (or key), sends it for an existing one and for a missing one, and asserts both answers are the same.
 * @returns the answer for the existing target.
 */
async function refused(ctx: Ctx, endpoint: Endpoint, headers: Record<string, string>, check: (res: HttpResult) => void): Promise<HttpResult> {
  const what = nameOf(endpoint);
  if (!endpoint.target) {
    const res = await call(ctx, endpoint, headers);
    check(res);
    assertNothingLeaked(ctx, res, what);
    return res;
  }
  const existingId = targetId(ctx, endpoint.target);
  const missingId = newId();
  const existing = await call(ctx, endpoint, headers, existingId);
  const missing = await call(ctx, endpoint, headers, missingId);
  check(existing);
  check(missing);
  assert.equal(seen(existing, existingId), seen(missing, missingId), `${what}: an existing ${endpoint.target} and a missing one are refused alike`);
  assertNothingLeaked(ctx, existing, what);
  assertNothingLeaked(ctx, missing, what);
  return existing;
}

type Snapshot = { tasks: string[]; events: number; keys: string[] };

/** The rows a refused request must leave alone: every task (or one tenant's), the number of their events, every key. */
async function snapshot(world: TestWorld, tenant?: string): Promise<Snapshot> {
  const where = tenant === undefined ? '' : 'WHERE t.tenant = $1';
  const values = tenant === undefined ? [] : [tenant];
  const tasks = await sqlRows<{ row: string }>(world, `SELECT row_to_json(t)::text AS row FROM tasks t ${where} ORDER BY id`, values);
  const [events] = await sqlRows<{ n: number }>(world, `SELECT count(*)::int AS n FROM task_events e JOIN tasks t ON t.id = e.task_id ${where}`, values);
  return { tasks: tasks.map((r) => r.row), events: events?.n ?? -1, keys: await apiKeyRows(world) };
}

const UNAUTHENTICATED = 'Bearer realm="conveyor"';
const INVALID_TOKEN = 'Bearer realm="conveyor", error="invalid_token"';

test('without a key every endpoint but the probes answers a 401 problem, and changes nothing', async (ctx) => {
  const before = await snapshot(ctx.world);
  assert.is(before.tasks.length, 2);
  // A key in a header the API does not read counts as no key at all.
  const noKeys: Record<string, string>[] = [{}, { 'x-api-key': ctx.keys.rw.secret }];
  for (const headers of noKeys) {
    for (const endpoint of endpoints(ctx.marker)) {
      await refused(ctx, endpoint, headers, (res) => {
        assertProblem(res, 401, 'unauthenticated', /API key is required/);
        assert.is(res.headers.get('www-authenticate'), UNAUTHENTICATED, nameOf(endpoint));
      });
    }
  }
  assert.equal(await snapshot(ctx.world), before, 'no row added, changed or removed');
});

test('a malformed or unknown bearer key: 401 invalid_token, the same for every such key; another scheme gets the bare challenge', async (ctx) => {
  const { secret } = ctx.keys.rw;
  const badKeys: [string, Record<string, string>][] = [
    ['an unknown key', bearer(newApiKey())],
    ['a malformed key', bearer('cvy_not-a-key')],
    ['a key that is not ours at all', bearer('hunter2')],
    ['a valid key with one character more', bearer(`${secret}A`)],
    ['a valid key with one character less', bearer(secret.slice(0, -1))],
    ['a valid key followed by another word', { authorization: `Bearer ${secret} ${secret}` }],
  ];
  // Not a bearer key at all: RFC 6750 answers with the bare challenge, no error code.
  const otherSchemes: [string, Record<string, string>][] = [
    ['a valid key without the Bearer scheme', { authorization: secret }],
    ['a valid key as Basic credentials', { authorization: `Basic ${Buffer.from(`user:${secret}`).toString('base64')}` }],
  ];
  const before = await snapshot(ctx.world);
  for (const endpoint of endpoints(ctx.marker)) {
    const answers = [];
    for (const [what, headers] of badKeys) {
      const res = await refused(ctx, endpoint, headers, (r) => {
        assertProblem(r, 401, 'unauthenticated', /API key is not valid/);
        assert.is(r.headers.get('www-authenticate'), INVALID_TOKEN, `${nameOf(endpoint)} with ${what}`);
      });
      answers.push(seen(res, endpoint.target ? targetId(ctx, endpoint.target) : ''));
    }
    for (const answer of answers) assert.equal(answer, answers[0], `${nameOf(endpoint)}: every bad key is refused alike`);
    for (const [what, headers] of otherSchemes) {
      await refused(ctx, endpoint, headers, (r) => {
        assertProblem(r, 401, 'unauthenticated', /API key is required/);
        assert.is(r.headers.get('www-authenticate'), UNAUTHENTICATED, `${nameOf(endpoint)} with ${what}`);
      });
    }
  }
  assert.equal(await snapshot(ctx.world), before, 'no row added, changed or removed');
});

test('a revoked key is refused exactly like an unknown one, and changes nothing', async (ctx) => {
  const before = await snapshot(ctx.world);
  const unknown = bearer(newApiKey());
  for (const endpoint of endpoints(ctx.marker)) {
    const check = (res: HttpResult) => {
      assertProblem(res, 401, 'unauthenticated', /API key is not valid/);
      assert.is(res.headers.get('www-authenticate'), INVALID_TOKEN, nameOf(endpoint));
    };
    const revoked = await refused(ctx, endpoint, ctx.keys.revoked.headers, check);
    const stranger = await refused(ctx, endpoint, unknown, check);
    const id = endpoint.target ? targetId(ctx, endpoint.target) : '';
    assert.equal(seen(revoked, id), seen(stranger, id), `${nameOf(endpoint)}: revoked and unknown keys look the same`);
  }
  assert.equal(await snapshot(ctx.world), before, 'no row added, changed or removed');
});

test('a key without the needed scope: 403 naming the scope; read-only cannot write, write-only cannot read, admin-only cannot touch tasks', async (ctx) => {
  const { rw, ro, wo, adminOnly } = ctx.keys;
  const lacking: Record<Scope, [string, TestKey][]> = {
    [Scope.tasksRead]: [['write-only', wo], ['admin-only', adminOnly]],
    [Scope.tasksWrite]: [['read-only', ro], ['admin-only', adminOnly]],
    [Scope.admin]: [['read-only', ro], ['write-only', wo], ['read-write', rw]],
  };
  const before = await snapshot(ctx.world);
  let refusals = 0;
  for (const endpoint of endpoints(ctx.marker)) {
    const scope = endpoint.scope;
    if (scope === null) continue;
    for (const [what, key] of lacking[scope]) {
      await refused(ctx, endpoint, key.headers, (res) => {
        assertProblem(res, 403, 'forbidden', new RegExp(`lacks the '${scope}' scope`));
        const challenge = `Bearer realm="conveyor", error="insufficient_scope", scope="${scope}"`;
        assert.is(res.headers.get('www-authenticate'), challenge, `${nameOf(endpoint)} with the ${what} key`);
      });
      refusals++;
    }
  }
  assert.is(refusals, 30, 'every scoped endpoint was tried with every key that lacks its scope');
  assert.equal(await snapshot(ctx.world), before, 'no row added, changed or removed');
  // The docs need a key, but any scope will do.
  for (const endpoint of endpoints(ctx.marker).filter((e) => e.scope === null)) {
    for (const key of [ro, wo, adminOnly]) assert.is((await call(ctx, endpoint, key.headers)).status, 200, nameOf(endpoint));
  }
});

test("another tenant's key: the task is a 404 exactly like a missing one; lists and submits stay in its own tenant", async (ctx) => {
  const { other } = ctx.keys;
  const before = await snapshot(ctx.world, OWNER);
  for (const endpoint of endpoints(ctx.marker).filter((e) => e.tenantBound)) {
    if (endpoint.target) {
      await refused(ctx, endpoint, other.headers, (res) => assertProblem(res, 404, 'task-not-found', /does not exist/));
      continue;
    }
    const res = await call(ctx, endpoint, other.headers);
    if (endpoint.method === 'POST') {
      assert.is(res.status, 201, res.text);
      // A batch answers with its tasks as items.
      const task = res.body.items?.[0] ?? res.body;
      assert.is(task.tenant, OTHER);
      const [row] = await sqlRows<{ tenant: string }>(ctx.world, 'SELECT tenant FROM tasks WHERE id = $1', [task.id]);
      assert.is(row?.tenant, OTHER);
    } else {
      assert.is(res.status, 200, res.text);
      const items = res.body.items as { id: string; tenant: string }[];
      assert.ok(items.length > 0, 'globex sees its own task');
      assert.ok(items.every((task) => task.tenant === OTHER), JSON.stringify(items));
      assert.not.ok(items.some((task) => task.id === ctx.live || task.id === ctx.cancelled));
    }
  }
  // Naming the other tenant explicitly does not help either.
  assertProblem(await request(ctx.baseUrl, 'GET', `${TASKS}?tenant=${OWNER}`, undefined, other.headers), 400, 'validation-failed', /tenant/);
  const sneaky = await request(ctx.baseUrl, 'POST', TASKS, { type: 'echo', tenant: OWNER }, other.headers);
  assertProblem(sneaky, 422, 'validation-failed', /tenant/);
  assert.equal(await snapshot(ctx.world, OWNER), before, "acme's tasks, their events and every key are unchanged");
});

test('each scope works on its own endpoints, so the refusals above are about scope and not a broken key', async (ctx) => {
  const { ro, wo, adminOnly, rw } = ctx.keys;
  const list = await request(ctx.baseUrl, 'GET', TASKS, undefined, ro.headers);
  assert.is(list.status, 200);
  assert.ok(list.body.items.some((task: { id: string }) => task.id === ctx.live));
  assert.is((await request(ctx.baseUrl, 'GET', `${TASKS}/${ctx.live}`, undefined, ro.headers)).body.id, ctx.live);
  assert.is((await request(ctx.baseUrl, 'GET', `${TASKS}/${ctx.live}/events`, undefined, ro.headers)).status, 200);

  const created = await request(ctx.baseUrl, 'POST', TASKS, { type: 'echo' }, wo.headers);
  assert.is(created.status, 201, created.text);
  const id = created.body.id as string;
  assert.is((await request(ctx.baseUrl, 'POST', `${TASKS}/${id}/cancel`, undefined, wo.headers)).body.status, TaskStatus.cancelled);
  assert.is((await request(ctx.baseUrl, 'POST', `${TASKS}/${id}/retry`, undefined, wo.headers)).status, 202);
  assert.is((await request(ctx.baseUrl, 'DELETE', `${TASKS}/${id}`, undefined, wo.headers)).status, 204);

  assert.is((await request(ctx.baseUrl, 'GET', KEYS, undefined, adminOnly.headers)).status, 200);
  const metrics = await request(ctx.baseUrl, 'GET', '/metrics', undefined, adminOnly.headers);
  assert.is(metrics.status, 200);
  assert.match(metrics.text, /conveyor_http_requests_total/);
  // The scheme is case-insensitive (RFC 9110).
  assert.is((await request(ctx.baseUrl, 'GET', TASKS, undefined, { authorization: `bearer ${rw.secret}` })).status, 200);
});

test("a task belongs to its key's tenant, in the answer and in the row", async (ctx) => {
  for (const [key, tenant] of [[ctx.keys.rw, OWNER], [ctx.keys.other, OTHER]] as const) {
    const created = await request(ctx.baseUrl, 'POST', TASKS, { type: 'echo', payload: { n: 1 } }, key.headers);
    assert.is(created.status, 201, created.text);
    assert.is(created.body.tenant, tenant);
    assert.is((await request(ctx.baseUrl, 'GET', `${TASKS}/${created.body.id}`, undefined, key.headers)).body.tenant, tenant);
    const [row] = await sqlRows<{ tenant: string }>(ctx.world, 'SELECT tenant FROM tasks WHERE id = $1', [created.body.id]);
    assert.is(row?.tenant, tenant);
  }
});

test('Idempotency-Key is per tenant: the same key in two tenants makes two tasks, each replayed only in its tenant', async (ctx) => {
  const idempotencyKey = `order-${randomUUID()}`;
  const submit = (key: TestKey) =>
    request(ctx.baseUrl, 'POST', TASKS, { type: 'echo', payload: { n: 2 } }, { ...key.headers, 'idempotency-key': idempotencyKey });
  const acme = await submit(ctx.keys.rw);
  const globex = await submit(ctx.keys.other);
  assert.is(acme.status, 201, acme.text);
  assert.is(globex.status, 201, globex.text);
  assert.is.not(globex.body.id, acme.body.id);
  assert.is(globex.body.tenant, OTHER);
  const acmeAgain = await submit(ctx.keys.rw);
  const globexAgain = await submit(ctx.keys.other);
  assert.is(acmeAgain.status, 200);
  assert.is(acmeAgain.body.id, acme.body.id);
  assert.is(globexAgain.status, 200);
  assert.is(globexAgain.body.id, globex.body.id);
  const rows = await sqlRows<{ tenant: string }>(ctx.world, 'SELECT tenant FROM tasks WHERE idempotency_key = $1 ORDER BY tenant', [idempotencyKey]);
  assert.equal(rows.map((r) => r.tenant), [OWNER, OTHER]);
});

test("lists are per tenant, and one tenant's cursor shows another tenant only its own tasks", async (ctx) => {
  const submit = async (key: TestKey) => (await request(ctx.baseUrl, 'POST', TASKS, { type: 'echo' }, key.headers)).body.id as string;
  const olderGlobex = await submit(ctx.keys.other);
  const acme = [await submit(ctx.keys.rw), await submit(ctx.keys.rw), await submit(ctx.keys.rw)];
  const newerGlobex = await submit(ctx.keys.other);

  async function everything(key: TestKey): Promise<{ id: string; tenant: string }[]> {
    const all = [];
    let cursor: string | null = null;
    for (let page = 0; page < 50; page++) {
      const query: string = cursor ? `?limit=2&cursor=${cursor}` : '?limit=2';
      const res = await request(ctx.baseUrl, 'GET', `${TASKS}${query}`, undefined, key.headers);
      assert.is(res.status, 200, res.text);
      all.push(...res.body.items);
      cursor = res.body.nextCursor;
      if (!cursor) return all;
    }
    throw new Error('more than 50 pages');
  }
  const acmeList = await everything(ctx.keys.rw);
  const globexList = await everything(ctx.keys.other);
  assert.ok(acmeList.every((task) => task.tenant === OWNER));
  assert.ok(globexList.every((task) => task.tenant === OTHER));
  const acmeIds = acmeList.map((task) => task.id);
  const globexIds = globexList.map((task) => task.id);
  for (const id of [...acme, ctx.live, ctx.cancelled]) assert.ok(acmeIds.includes(id) && !globexIds.includes(id), `acme task ${id}`);
  for (const id of [olderGlobex, newerGlobex]) assert.ok(globexIds.includes(id) && !acmeIds.includes(id), `globex task ${id}`);

  // acme's first page ends at its newest task; globex, paging on with that cursor, sees its own older task only.
  const first = await request(ctx.baseUrl, 'GET', `${TASKS}?limit=1`, undefined, ctx.keys.rw.headers);
  assert.equal(first.body.items.map((task: { id: string }) => task.id), [acme[2]]);
  const crossed = await request(ctx.baseUrl, 'GET', `${TASKS}?limit=500&cursor=${first.body.nextCursor}`, undefined, ctx.keys.other.headers);
  assert.is(crossed.status, 200, crossed.text);
  const crossedIds = crossed.body.items.map((task: { id: string }) => task.id);
  assert.ok(crossedIds.includes(olderGlobex), 'the cursor still pages through globex tasks');
  assert.not.ok(crossedIds.includes(newerGlobex), 'and only those older than the cursor');
  assert.ok(crossed.body.items.every((task: { tenant: string }) => task.tenant === OTHER), crossed.text);
  assert.not.ok(crossedIds.some((id: string) => acmeIds.includes(id)));
});

test('admin keys are not bound to their tenant: a globex admin key manages acme keys (as documented for the admin scope)', async (ctx) => {
  const { other } = ctx.keys;
  const listed = await request(ctx.baseUrl, 'GET', `${KEYS}?tenant=${OWNER}`, undefined, other.headers);
  assert.is(listed.status, 200);
  assert.ok(listed.body.items.some((key: { id: string }) => key.id === ctx.keys.rw.id));
  const created = await request(ctx.baseUrl, 'POST', KEYS, { tenant: OWNER, scopes: [Scope.tasksRead] }, other.headers);
  assert.is(created.status, 201, created.text);
  const minted = bearer(created.body.key);
  assert.is((await request(ctx.baseUrl, 'GET', `${TASKS}/${ctx.live}`, undefined, minted)).status, 200, 'it acts for acme');
  assert.is((await request(ctx.baseUrl, 'DELETE', `${KEYS}/${created.body.id}`, undefined, other.headers)).status, 200);
  assert.is((await request(ctx.baseUrl, 'GET', `${TASKS}/${ctx.live}`, undefined, minted)).status, 401);
});

test('/healthz and /readyz need no key', async ({ baseUrl }) => {
  const health = await request(baseUrl, 'GET', '/healthz');
  assert.is(health.status, 200);
  assert.equal(health.body, { status: 'ok' });
  const ready = await request(baseUrl, 'GET', '/readyz');
  assert.is(ready.status, 200, ready.text);
  assert.equal(ready.body.checks, { database: 'up', broker: 'up' });
});

/** Paths that stay closed whatever is public, and look-alikes of the public ones. */
const ALWAYS_CLOSED = [TASKS, KEYS, '/api/v1/tasks/00000000-0000-7000-8000-000000000000', '/docsx', '/openapi.jsonx', '/metricsx', '/metrics/x'];

test('PUBLIC_DOCS=true opens /docs and /openapi.json, and nothing else', async (ctx) => {
  const api = await ctx.world.startApi({ AUTH_MODE: 'apikey', PUBLIC_DOCS: 'true' });
  try {
    const page = await request(api.baseUrl, 'GET', '/docs');
    assert.is(page.status, 200);
    assert.match(page.text, /swagger-ui/);
    assert.is((await request(api.baseUrl, 'GET', '/docs/init.js')).status, 200);
    const spec = await request(api.baseUrl, 'GET', '/openapi.json');
    assert.is(spec.status, 200);
    assert.match(spec.body.openapi, /^3\./);
    for (const path of ['/metrics', ...ALWAYS_CLOSED]) assertProblem(await request(api.baseUrl, 'GET', path), 401, 'unauthenticated');
  } finally {
    await api.lifecycle.stop();
  }
});

test('PUBLIC_METRICS=true opens /metrics, and nothing else', async (ctx) => {
  const api = await ctx.world.startApi({ AUTH_MODE: 'apikey', PUBLIC_METRICS: 'true' });
  try {
    const metrics = await request(api.baseUrl, 'GET', '/metrics');
    assert.is(metrics.status, 200);
    assert.match(metrics.text, /conveyor_http_requests_total/);
    for (const path of ['/docs', '/docs/init.js', '/openapi.json', ...ALWAYS_CLOSED]) {
      assertProblem(await request(api.baseUrl, 'GET', path), 401, 'unauthenticated');
    }
  } finally {
    await api.lifecycle.stop();
  }
});

test.run();
