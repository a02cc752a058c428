import { Validator } from '@seriousme/openapi-schema-validator';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { services } from '../support/services.ts';
import { eventually, request, TestWorld } from '../support/system.ts';
import { TcpProxy } from '../support/tcp-proxy.ts';
import { freePort } from '../support/isolation.ts';

type Ctx = { world: TestWorld; baseUrl: string };
const test = suite<Ctx>('api: health, readiness and docs');

test.before(async (ctx) => {
  ctx.world = await TestWorld.create();
  const api = await ctx.world.startApi();
  ctx.baseUrl = api.baseUrl;
  await eventually(async () => api.broker.connected, 10_000, 'the API to connect to RabbitMQ');
});

test.after(async (ctx) => {
  await ctx.world.teardown();
});

test('GET /healthz answers 200 while the process lives', async ({ baseUrl }) => {
  const res = await request(baseUrl, 'GET', '/healthz');
  assert.is(res.status, 200);
  assert.equal(res.body, { status: 'ok' });
});

test('GET /readyz answers 200 when PostgreSQL and RabbitMQ are reachable', async ({ baseUrl }) => {
  const res = await request(baseUrl, 'GET', '/readyz');
  assert.is(res.status, 200);
  assert.equal(res.body, { status: 'ok', checks: { database: 'up', broker: 'up' } });
});

test('GET /docs serves Swagger UI for /openapi.json, with its assets', async ({ baseUrl }) => {
  const page = await request(baseUrl, 'GET', '/docs');
  assert.is(page.status, 200);
  assert.match(page.headers.get('content-type') ?? '', /text\/html/);
  assert.match(page.text, /swagger-ui-bundle\.js/);
  const init = await request(baseUrl, 'GET', '/docs/init.js');
  assert.match(init.text, /url: '\/openapi\.json'/);
  for (const asset of ['swagger-ui-bundle.js', 'swagger-ui.css']) {
    const res = await fetch(`${baseUrl}/docs/${asset}`);
    assert.is(res.status, 200, asset);
    assert.ok((await res.arrayBuffer()).byteLength > 1000, `${asset} has content`);
  }
  assert.is((await request(baseUrl, 'GET', '/docs/../package.json')).status, 404);
  assert.is((await request(baseUrl, 'GET', '/docs/index.js')).status, 404);
});

test('GET /openapi.json is a valid OpenAPI 3.1 document describing every route', async ({ baseUrl }) => {
  const res = await request(baseUrl, 'GET', '/openapi.json');
  assert.is(res.status, 200);
  assert.is(res.body.openapi, '3.1.0');
  const result = await new Validator().validate(res.body);
  assert.ok(result.valid, JSON.stringify(result.errors));
  assert.equal(Object.keys(res.body.paths).sort(), [
    '/api/v1/keys',
    '/api/v1/keys/{id}',
    '/api/v1/tasks',
    '/api/v1/tasks/batch',
    '/api/v1/tasks/{id}',
    '/api/v1/tasks/{id}/cancel',
    '/api/v1/tasks/{id}/events',
    '/api/v1/tasks/{id}/retry',
    '/healthz',
    '/readyz',
  ]);
  const operations = (path: string) => Object.keys(res.body.paths[path]).filter((k) => k !== 'parameters').sort();
  assert.equal(operations('/api/v1/tasks'), ['get', 'post']);
  assert.equal(operations('/api/v1/tasks/{id}'), ['delete', 'get']);
  assert.equal(operations('/api/v1/tasks/{id}/cancel'), ['post']);
  assert.equal(operations('/api/v1/tasks/{id}/retry'), ['post']);
  assert.equal(operations('/api/v1/tasks/{id}/events'), ['get']);
  // DELETE works in every status now; a documented 409 would send clients looking for a conflict that never comes.
  assert.equal(Object.keys(res.body.paths['/api/v1/tasks/{id}'].delete.responses).sort(), ['204', '400', '401', '403', '404', '429']);
  assert.equal(operations('/api/v1/keys'), ['get', 'post']);
  assert.equal(operations('/api/v1/keys/{id}'), ['delete']);
  // Every operation but the probes takes the bearer key, and documents what a refused key gets.
  assert.equal(res.body.security, [{ apiKey: [] }]);
  assert.equal(res.body.components.securitySchemes.apiKey, { type: 'http', scheme: 'bearer', description: res.body.components.securitySchemes.apiKey.description });
  for (const [path, item] of Object.entries<Record<string, any>>(res.body.paths)) {
    for (const [method, operation] of Object.entries<any>(item).filter(([k]) => k !== 'parameters')) {
      const probe = path === '/healthz' || path === '/readyz';
      assert.equal(operation.security, probe ? [] : undefined, `${method} ${path} security`);
      if (!probe) for (const status of ['401', '403', '429']) assert.ok(operation.responses[status], `${method} ${path} documents ${status}`);
    }
  }
  assert.ok(res.body.paths['/api/v1/tasks'].post.responses['200'], 'a repeated idempotency key answers 200');
  for (const type of ['fail', 'sleep']) assert.ok(res.body.components.schemas[`${type}Payload`], `${type}Payload`);
  // Every reference points at a component that exists.
  const refs = JSON.stringify(res.body).match(/"\$ref":"[^"]+"/g) ?? [];
  for (const ref of refs) {
    const name = /#\/components\/schemas\/([A-Za-z]+)"$/.exec(ref)?.[1];
    assert.ok(name && res.body.components.schemas[name], `dangling ${ref}`);
  }
});

test('the OpenAPI SubmitTask schema accepts and rejects exactly what POST accepts and rejects', async ({ baseUrl }) => {
  const doc = (await request(baseUrl, 'GET', '/openapi.json')).body;
  const ajv = new Ajv2020({ strict: false });
  // RFC 3339 date-time with a zone, as POST takes `runAt`; without it the schema would accept any string there.
  ajv.addFormat('date-time', /^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:\d\d)$/);
  // References inside the document are relative to its root, so the components are loaded as one schema.
  ajv.addSchema({ $id: 'openapi.json', components: doc.components });
  const validate = ajv.compile({ $ref: 'openapi.json#/components/schemas/SubmitTask' });
  const bodies: unknown[] = [
    { type: 'echo' },
    { type: 'echo', payload: [1, { a: null }], priority: 9, maxAttempts: 100 },
    { type: 'echo', priority: 0 },
    { type: 'echo', priority: 10 },
    { type: 'echo', priority: 2.5 },
    { type: 'echo', maxAttempts: 0 },
    { type: 'echo', maxAttempts: 101 },
    { type: 'unknown' },
    { type: 'echo', color: 'red' },
    { priority: 3 },
    { type: 7 },
    { type: 'echo', backoff: { type: 'fixed', delayMs: 100, maxDelayMs: 100, jitter: false } },
    { type: 'echo', backoff: {} },
    { type: 'echo', backoff: { type: 'linear' } },
    { type: 'echo', backoff: { delayMs: -1 } },
    { type: 'echo', backoff: { factor: 2 } },
    { type: 'echo', runAt: '2030-01-01T00:00:00Z' },
    { type: 'echo', runAt: '2030-01-01T00:00:00.5+02:00' },
    { type: 'echo', runAt: 'tomorrow' },
    { type: 'echo', runAt: 1_900_000_000_000 },
    { type: 'echo', timeoutMs: 1 },
    { type: 'echo', timeoutMs: 0 },
    { type: 'echo', retentionMs: 0 },
    { type: 'echo', retentionMs: -5 },
    { type: 'echo', idempotencyKey: `schema-${Date.now()}` },
    { type: 'echo', idempotencyKey: '' },
  ];
  for (const body of bodies) {
    const res = await request(baseUrl, 'POST', '/api/v1/tasks', body);
    const valid = validate(body) === true;
    assert.is(res.status === 201, valid, `${JSON.stringify(body)}: API ${res.status}, schema ${valid}`);
  }
});

test('with RabbitMQ unreachable, a submit is stored as pending (201) and /readyz is 503 naming RabbitMQ', async ({ world }) => {
  const api = await world.startApi({ AMQP_URL: `amqp://guest:guest@127.0.0.1:${await freePort()}` });
  const started = performance.now();
  const res = await request(api.baseUrl, 'POST', '/api/v1/tasks', { type: 'echo', payload: { kept: true } });
  assert.is(res.status, 201);
  assert.is(res.body.status, 'pending');
  assert.ok(performance.now() - started < 2_000, 'the submit does not wait on the dead broker');
  const stored = await request(api.baseUrl, 'GET', `/api/v1/tasks/${res.body.id}`);
  assert.is(stored.body.status, 'pending');
  assert.equal(stored.body.payload, { kept: true });
  const ready = await request(api.baseUrl, 'GET', '/readyz');
  assert.is(ready.status, 503);
  assert.match(ready.headers.get('content-type') ?? '', /application\/problem\+json/);
  assert.match(ready.body.detail, /RabbitMQ/);
  assert.equal(ready.body.checks, { database: 'up', broker: 'down' });
  await api.lifecycle.stop();
});

test('with PostgreSQL cut off, /readyz is 503 naming PostgreSQL and a submit is a 503 problem; both recover', async ({ world }) => {
  const target = new URL(world.env['DATABASE_URL'] as string);
  const proxy = await TcpProxy.start(target.hostname, Number(target.port || 5432));
  try {
    const api = await world.startApi({ DATABASE_URL: proxy.rewrite(world.env['DATABASE_URL'] as string) });
    await eventually(async () => api.broker.connected, 10_000, 'RabbitMQ');
    proxy.cut();
    const ready = await request(api.baseUrl, 'GET', '/readyz');
    assert.is(ready.status, 503);
    assert.match(ready.body.detail, /PostgreSQL/);
    assert.equal(ready.body.checks, { database: 'down', broker: 'up' });
    const submit = await request(api.baseUrl, 'POST', '/api/v1/tasks', { type: 'echo' });
    assert.is(submit.status, 503);
    assert.match(submit.headers.get('content-type') ?? '', /application\/problem\+json/);
    assert.match(submit.body.detail, /PostgreSQL/);
    proxy.heal();
    await eventually(async () => (await request(api.baseUrl, 'GET', '/readyz')).status === 200, 15_000, 'readiness to recover');
    assert.is((await request(api.baseUrl, 'POST', '/api/v1/tasks', { type: 'echo' })).status, 201);
    await api.lifecycle.stop();
  } finally {
    await proxy.close();
  }
});

test.run();
