import { createHash, randomUUID } from 'node:crypto';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ALL_SCOPES, API_KEY_PATTERN, newApiKey, Scope } from '../../services/core/src/auth/api-key.ts';
import { newId } from '../../services/core/src/ids.ts';
import { apiKeyRows, assertProblem, bearer, KEYS, makeKey, sqlRows, type StartedApi, TASKS, type TestKey } from '../support/keys.ts';
import { eventually, request, TestWorld } from '../support/system.ts';

type Ctx = { world: TestWorld; api: StartedApi; baseUrl: string; admin: TestKey };
const test = suite<Ctx>('api: API keys');

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
const KEY_FIELDS = ['createdAt', 'hint', 'id', 'name', 'revokedAt', 'scopes', 'tenant'];

test.before(async (ctx) => {
  ctx.world = await TestWorld.create();
  // A long cache: revocations through this API must apply at once all the same.
  ctx.api = await ctx.world.startApi({ AUTH_MODE: 'apikey', AUTH_CACHE_MS: '300000', RATE_LIMIT_PER_SECOND: '0' });
  ctx.baseUrl = ctx.api.baseUrl;
  ctx.admin = await makeKey(ctx.api, 'ops', [Scope.admin], 'operator');
});

test.after(async (ctx) => {
  await ctx.world.teardown();
});

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

function createKey(ctx: Ctx, body: unknown) {
  return request(ctx.baseUrl, 'POST', KEYS, body, ctx.admin.headers);
}

test('POST creates a key: 201 with the secret once, usable at once, stored only as its hash', async (ctx) => {
  const res = await createKey(ctx, { tenant: 'acme', scopes: [Scope.tasksRead, Scope.tasksWrite, Scope.tasksRead], name: 'ci deploys' });
  assert.is(res.status, 201, res.text);
  const { key: secret, ...key } = res.body;
  assert.match(secret, API_KEY_PATTERN);
  assert.is(res.headers.get('location'), `${KEYS}/${key.id}`);
  assert.equal(Object.keys(key).sort(), KEY_FIELDS);
  assert.is(key.tenant, 'acme');
  assert.is(key.name, 'ci deploys');
  assert.equal(key.scopes, [Scope.tasksRead, Scope.tasksWrite], 'duplicates dropped');
  assert.is(key.hint, `${secret.slice(0, 8)}…`);
  assert.match(key.createdAt, ISO);
  assert.is(key.revokedAt, null);

  const task = await request(ctx.baseUrl, 'POST', TASKS, { type: 'echo' }, bearer(secret));
  assert.is(task.status, 201, task.text);
  assert.is(task.body.tenant, 'acme');
  assert.is((await request(ctx.baseUrl, 'GET', `${TASKS}/${task.body.id}`, undefined, bearer(secret))).status, 200);

  const [row] = await sqlRows<{ secret_hash: string }>(ctx.world, 'SELECT secret_hash FROM api_keys WHERE id = $1', [key.id]);
  assert.is(row?.secret_hash, sha256(secret));
  // Neither the secret nor its random part past the hint is in any column of any row.
  const stored = (await apiKeyRows(ctx.world)).join('\n');
  for (const part of [secret, secret.slice(4), secret.slice(8)]) assert.not.ok(stored.includes(part), 'the secret is stored');

  const listed = await request(ctx.baseUrl, 'GET', KEYS, undefined, ctx.admin.headers);
  assert.not.ok(listed.text.includes(secret.slice(8)), 'the list shows the secret');
  assert.equal(listed.body.items.find((item: { id: string }) => item.id === key.id), key);

  const unnamed = await createKey(ctx, { tenant: 'acme', scopes: [Scope.admin] });
  assert.is(unnamed.status, 201, unnamed.text);
  assert.is(unnamed.body.name, '');
  assert.is.not(unnamed.body.key, secret);
});

test('POST answers 422 naming the field for a bad tenant, scope, scopes list, extra field or NUL in the name, and stores nothing', async (ctx) => {
  const before = await apiKeyRows(ctx.world);
  const cases: [unknown, string][] = [
    [{ tenant: 'Acme', scopes: [Scope.tasksRead] }, 'tenant'],
    [{ tenant: 'acme_corp', scopes: [Scope.tasksRead] }, 'tenant'],
    [{ tenant: '-acme', scopes: [Scope.tasksRead] }, 'tenant'],
    [{ tenant: 'a'.repeat(64), scopes: [Scope.tasksRead] }, 'tenant'],
    [{ tenant: '', scopes: [Scope.tasksRead] }, 'tenant'],
    [{ scopes: [Scope.tasksRead] }, 'tenant'],
    [{ tenant: 'acme', scopes: ['tasks:delete'] }, 'scopes.0'],
    [{ tenant: 'acme', scopes: [Scope.tasksRead, 'ADMIN'] }, 'scopes.1'],
    [{ tenant: 'acme', scopes: [] }, 'scopes'],
    [{ tenant: 'acme', scopes: 'admin' }, 'scopes'],
    [{ tenant: 'acme' }, 'scopes'],
    [{ tenant: 'acme', scopes: [Scope.tasksRead], key: newApiKey() }, '(body)'],
    [{ tenant: 'acme', scopes: [Scope.tasksRead], revokedAt: null }, '(body)'],
    [{ tenant: 'acme', scopes: [Scope.tasksRead], name: 'a\u0000b' }, 'name'],
    [{ tenant: 'acme', scopes: [Scope.tasksRead], name: 'x'.repeat(201) }, 'name'],
  ];
  for (const [body, path] of cases) {
    const res = await createKey(ctx, body);
    assertProblem(res, 422, 'validation-failed');
    assert.ok(
      res.body.errors?.some((issue: { path: string }) => issue.path === path),
      `${JSON.stringify(body).slice(0, 80)}: expected an error at ${path}, got ${JSON.stringify(res.body.errors)}`,
    );
    assert.is(res.body.key, undefined);
  }
  assert.equal(await apiKeyRows(ctx.world), before, 'no key stored or changed');
});

test('GET lists keys without secrets, filters by tenant, and shows revoked keys with revokedAt', async (ctx) => {
  const made = [];
  for (const tenant of ['list-a', 'list-b', 'list-a']) {
    const res = await createKey(ctx, { tenant, scopes: [Scope.tasksRead], name: `key for ${tenant}` });
    assert.is(res.status, 201, res.text);
    made.push(res.body as { id: string; key: string });
  }
  const [a1, b1, a2] = made as [{ id: string; key: string }, { id: string; key: string }, { id: string; key: string }];
  const revoked = await request(ctx.baseUrl, 'DELETE', `${KEYS}/${a1.id}`, undefined, ctx.admin.headers);
  assert.is(revoked.status, 200);

  const listA = await request(ctx.baseUrl, 'GET', `${KEYS}?tenant=list-a`, undefined, ctx.admin.headers);
  assert.is(listA.status, 200);
  assert.equal(listA.body.items.map((key: { id: string }) => key.id), [a1.id, a2.id], 'oldest first, only list-a');
  assert.match(listA.body.items[0].revokedAt, ISO);
  assert.is(listA.body.items[0].revokedAt, revoked.body.revokedAt);
  assert.is(listA.body.items[1].revokedAt, null);
  const listB = await request(ctx.baseUrl, 'GET', `${KEYS}?tenant=list-b`, undefined, ctx.admin.headers);
  assert.equal(listB.body.items.map((key: { id: string }) => key.id), [b1.id]);
  assert.equal((await request(ctx.baseUrl, 'GET', `${KEYS}?tenant=nobody`, undefined, ctx.admin.headers)).body, { items: [] });

  const all = await request(ctx.baseUrl, 'GET', KEYS, undefined, ctx.admin.headers);
  const ids = all.body.items.map((key: { id: string }) => key.id);
  for (const id of [ctx.admin.id, a1.id, b1.id, a2.id]) assert.ok(ids.includes(id), `every tenant's keys: ${id}`);
  for (const item of all.body.items) assert.equal(Object.keys(item).sort(), KEY_FIELDS);
  for (const { key } of made) assert.not.ok(all.text.includes(key.slice(8)), 'a secret is listed');
  assert.not.ok(all.text.includes(ctx.admin.secret.slice(8)), 'a secret is listed');

  for (const query of ['tenant=List_A', 'tenant=', 'owner=list-a']) {
    assertProblem(await request(ctx.baseUrl, 'GET', `${KEYS}?${query}`, undefined, ctx.admin.headers), 400, 'validation-failed');
  }
});

test('DELETE revokes: 200 with revokedAt, refused at once on this API despite its long cache; revoking again is fine', async (ctx) => {
  const key = await makeKey(ctx.api, 'acme', [Scope.tasksRead]);
  assert.is((await request(ctx.baseUrl, 'GET', TASKS, undefined, key.headers)).status, 200, 'the key works, and is now cached');
  const first = await request(ctx.baseUrl, 'DELETE', `${KEYS}/${key.id}`, undefined, ctx.admin.headers);
  assert.is(first.status, 200, first.text);
  assert.is(first.body.id, key.id);
  assert.match(first.body.revokedAt, ISO);
  assert.equal(Object.keys(first.body).sort(), KEY_FIELDS);
  assertProblem(await request(ctx.baseUrl, 'GET', TASKS, undefined, key.headers), 401, 'unauthenticated', /not valid/);
  const second = await request(ctx.baseUrl, 'DELETE', `${KEYS}/${key.id}`, undefined, ctx.admin.headers);
  assert.is(second.status, 200);
  assert.is(second.body.revokedAt, first.body.revokedAt, 'the first revocation time is kept');
  assertProblem(await request(ctx.baseUrl, 'GET', TASKS, undefined, key.headers), 401, 'unauthenticated');
});

test('DELETE: 404 for an unknown key id, 400 for a malformed one; nothing changes', async (ctx) => {
  const before = await apiKeyRows(ctx.world);
  const missing = newId();
  assertProblem(await request(ctx.baseUrl, 'DELETE', `${KEYS}/${missing}`, undefined, ctx.admin.headers), 404, 'api-key-not-found', new RegExp(missing));
  for (const id of ['not-a-uuid', '123', `${ctx.admin.id}x`]) {
    assertProblem(await request(ctx.baseUrl, 'DELETE', `${KEYS}/${id}`, undefined, ctx.admin.headers), 400, 'validation-failed', /key id/);
  }
  assert.equal(await apiKeyRows(ctx.world), before);
  assert.is((await request(ctx.baseUrl, 'GET', KEYS, undefined, ctx.admin.headers)).status, 200, 'the admin key still works');
});

test('a revocation made elsewhere (the repository, as the CLI does) is honoured once AUTH_CACHE_MS has passed', async (ctx) => {
  const quick = await ctx.world.startApi({ AUTH_MODE: 'apikey', AUTH_CACHE_MS: '200', RATE_LIMIT_PER_SECOND: '0' });
  try {
    const key = await makeKey(quick, 'acme', [Scope.tasksRead]);
    const read = (baseUrl: string) => request(baseUrl, 'GET', TASKS, undefined, key.headers);
    assert.is((await read(quick.baseUrl)).status, 200);
    assert.is((await read(ctx.baseUrl)).status, 200, 'the long-cache API has seen the key too');
    await ctx.api.database.apiKeys().revokeKey(key.id);
    await eventually(async () => (await read(quick.baseUrl)).status === 401, 5_000, 'the 200 ms cache to let the revocation through');
    assertProblem(await read(quick.baseUrl), 401, 'unauthenticated', /not valid/);
    // The contrast: the API that caches for 5 minutes still trusts it, so the refusal above came after its cache, not before.
    assert.is((await read(ctx.baseUrl)).status, 200);
  } finally {
    await quick.lifecycle.stop();
  }
});

test('AUTH_BOOTSTRAP_KEY has every scope for AUTH_BOOTSTRAP_TENANT, survives a restart, and stays revoked once revoked', async (ctx) => {
  const secret = newApiKey();
  const settings = { AUTH_MODE: 'apikey', AUTH_BOOTSTRAP_KEY: secret, AUTH_BOOTSTRAP_TENANT: 'boot', AUTH_CACHE_MS: '0', RATE_LIMIT_PER_SECOND: '0' };
  const headers = bearer(secret);
  const bootstrapKeys = async (baseUrl: string) => (await request(baseUrl, 'GET', `${KEYS}?tenant=boot`, undefined, headers)).body.items;

  const first = await ctx.world.startApi(settings);
  const task = await request(first.baseUrl, 'POST', TASKS, { type: 'echo' }, headers);
  assert.is(task.status, 201, task.text);
  assert.is(task.body.tenant, 'boot');
  assert.is((await request(first.baseUrl, 'GET', `${TASKS}/${task.body.id}`, undefined, headers)).status, 200);
  assert.is((await request(first.baseUrl, 'GET', '/metrics', undefined, headers)).status, 200);
  const [key, ...more] = await bootstrapKeys(first.baseUrl);
  assert.equal(more, []);
  assert.equal([...key.scopes].sort(), [...ALL_SCOPES].sort());
  assert.is(key.name, 'bootstrap');
  assert.is(key.revokedAt, null);
  const [row] = await sqlRows<{ secret_hash: string }>(ctx.world, 'SELECT secret_hash FROM api_keys WHERE id = $1', [key.id]);
  assert.is(row?.secret_hash, sha256(secret));
  await first.lifecycle.stop();

  const second = await ctx.world.startApi(settings);
  assert.is((await request(second.baseUrl, 'GET', `${TASKS}/${task.body.id}`, undefined, headers)).status, 200, 'works after a restart');
  assert.equal((await bootstrapKeys(second.baseUrl)).map((k: { id: string }) => k.id), [key.id], 'one key, not a second copy');
  const revoked = await request(second.baseUrl, 'DELETE', `${KEYS}/${key.id}`, undefined, headers);
  assert.is(revoked.status, 200, revoked.text);
  assertProblem(await request(second.baseUrl, 'GET', TASKS, undefined, headers), 401, 'unauthenticated');
  await second.lifecycle.stop();

  const third = await ctx.world.startApi(settings);
  try {
    assertProblem(await request(third.baseUrl, 'GET', TASKS, undefined, headers), 401, 'unauthenticated');
    const listed = await request(third.baseUrl, 'GET', `${KEYS}?tenant=boot`, undefined, ctx.admin.headers);
    assert.equal(listed.body.items.map((k: { id: string; revokedAt: string }) => [k.id, k.revokedAt]), [[key.id, revoked.body.revokedAt]]);
  } finally {
    await third.lifecycle.stop();
  }
});

test('rate limit: with 1/s and a burst of 3 the 4th quick request is a 429 with Retry-After; other keys go on; it recovers', async (ctx) => {
  const limited = await ctx.world.startApi({ AUTH_MODE: 'apikey', RATE_LIMIT_PER_SECOND: '1', RATE_LIMIT_BURST: '3' });
  try {
    const busy = await makeKey(limited, 'acme', [Scope.tasksRead, Scope.tasksWrite]);
    const calm = await makeKey(limited, 'acme', [Scope.tasksRead]);
    const list = (key: TestKey) => request(limited.baseUrl, 'GET', TASKS, undefined, key.headers);
    for (let i = 1; i <= 3; i++) assert.is((await list(busy)).status, 200, `request ${i} of the burst`);
    const refused = await list(busy);
    assertProblem(refused, 429, 'rate-limited', /too many requests/);
    const retryAfter = refused.headers.get('retry-after') ?? '';
    assert.match(retryAfter, /^\d+$/);
    assert.ok(Number(retryAfter) >= 1, `Retry-After: ${retryAfter}`);
    // Refused before the route runs: a submit stores nothing.
    const before = await sqlRows(ctx.world, 'SELECT id FROM tasks');
    const submit = await request(limited.baseUrl, 'POST', TASKS, { type: 'echo', payload: { run: randomUUID() } }, busy.headers);
    assertProblem(submit, 429, 'rate-limited');
    assert.equal(await sqlRows(ctx.world, 'SELECT id FROM tasks'), before);

    assert.is((await list(calm)).status, 200, 'another key has its own budget');
    await eventually(async () => (await list(busy)).status === 200, 5_000, 'the busy key to get a token back');
  } finally {
    await limited.lifecycle.stop();
  }
});

test('RATE_LIMIT_PER_SECOND=0 turns the limit off', async (ctx) => {
  const unlimited = await ctx.world.startApi({ AUTH_MODE: 'apikey', RATE_LIMIT_PER_SECOND: '0', RATE_LIMIT_BURST: '1' });
  try {
    const key = await makeKey(unlimited, 'acme', [Scope.tasksRead]);
    for (let i = 1; i <= 10; i++) {
      const res = await request(unlimited.baseUrl, 'GET', TASKS, undefined, key.headers);
      assert.is(res.status, 200, `request ${i}: ${res.text}`);
    }
  } finally {
    await unlimited.lifecycle.stop();
  }
});

test('only admin keys reach the key endpoints', async (ctx) => {
  const reader = await makeKey(ctx.api, 'acme', [Scope.tasksRead, Scope.tasksWrite]);
  const before = await apiKeyRows(ctx.world);
  assertProblem(await request(ctx.baseUrl, 'POST', KEYS, { tenant: 'acme', scopes: [Scope.admin] }, reader.headers), 403, 'forbidden', /admin/);
  assertProblem(await request(ctx.baseUrl, 'GET', KEYS, undefined, reader.headers), 403, 'forbidden', /admin/);
  assertProblem(await request(ctx.baseUrl, 'DELETE', `${KEYS}/${ctx.admin.id}`, undefined, reader.headers), 403, 'forbidden', /admin/);
  assert.equal(await apiKeyRows(ctx.world), before);
});

test.run();
