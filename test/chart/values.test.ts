import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { isMap, isScalar, parseDocument, type YAMLMap } from 'yaml';
import { CHART, render, template, VALUES_FILES } from './helm.ts';

const test = suite('chart: values, schema and guards');

const schema = JSON.parse(readFileSync(join(CHART, 'values.schema.json'), 'utf8')) as Record<string, unknown>;
const external = ['connections.databaseUrl=postgres://u:p@db:5432/conveyor', 'connections.amqpUrl=amqp://u:p@mq:5672'];

/** Renders with `set` and expects helm to refuse, saying `message`. */
async function refused(set: readonly string[], message: string | RegExp): Promise<void> {
  const result = await template([], set);
  assert.is.not(result.code, 0, `rendered with ${set.join(' ')}`);
  if (typeof message === 'string') assert.ok(result.stderr.includes(message), `expected "${message}" in:\n${result.stderr}`);
  else assert.match(result.stderr, message);
}

test('values.schema.json sets additionalProperties: false on every object with fixed keys', () => {
  const loose: string[] = [];
  const walk = (node: unknown, path: string) => {
    if (typeof node !== 'object' || node === null) return;
    const record = node as Record<string, unknown>;
    if (record['properties'] && record['additionalProperties'] !== false) loose.push(path);
    for (const [key, child] of Object.entries(record)) walk(child, `${path}/${key}`);
  };
  walk(schema, '#');
  assert.equal(loose, []);
});

test('an unknown key is refused with its name', async () => {
  await refused([...external, 'api.replicaz=3'], /additional properties 'replicaz' not allowed/);
  await refused([...external, 'wroker.concurrency=3'], /additional properties 'wroker' not allowed/);
});

test('a value of the wrong type or out of range is refused with its path', async () => {
  await refused([...external, 'api.replicas=two'], /\/api\/replicas.*got string, want integer/);
  await refused([...external, 'worker.concurrency=0'], /\/worker\/concurrency/);
  await refused([...external, 'config.logLevel=loud'], /\/config\/logLevel/);
  await refused(['connections.databaseUrl=mysql://db/conveyor', 'connections.amqpUrl=amqp://mq'], /\/connections\/databaseUrl/);
});

test('fail: no PostgreSQL and no RabbitMQ configured', async () => {
  await refused([], 'conveyor: no PostgreSQL configured. Set connections.databaseUrl, or connections.existingSecret');
  await refused(['connections.databaseUrl=postgres://db/conveyor'], 'conveyor: no RabbitMQ configured');
  await refused(['postgresql.enabled=true'], 'conveyor: no RabbitMQ configured');
});

test('fail: a connection given twice', async () => {
  await refused(['connections.existingSecret=mine', 'connections.databaseUrl=postgres://db/c'], 'connections.existingSecret is set together with connections.databaseUrl/amqpUrl');
  await refused(['connections.existingSecret=mine', 'postgresql.enabled=true'], 'connections.existingSecret cannot be combined with postgresql.enabled');
  await refused([...external, 'postgresql.enabled=true'], 'both connections.databaseUrl and postgresql.enabled are set');
  await refused([...external, 'rabbitmq.enabled=true'], 'both connections.amqpUrl and rabbitmq.enabled are set');
});

test('fail: a WorkerPool without the controller, an inverted pool, a short grace period, an Ingress without hosts', async () => {
  await refused([...external, 'controller.enabled=false'], 'worker.pool.enabled needs controller.enabled=true');
  await refused([...external, 'worker.pool.minReplicas=5', 'worker.pool.maxReplicas=2'], 'worker.pool.minReplicas (5) exceeds worker.pool.maxReplicas (2)');
  await refused([...external, 'worker.shutdownTimeoutMs=30000', 'worker.terminationGracePeriodSeconds=40'], 'worker.terminationGracePeriodSeconds (40) must exceed worker.shutdownTimeoutMs + 10 s (40 s)');
  await refused([...external, 'api.ingress.enabled=true', 'api.ingress.hosts=null'], 'api.ingress.enabled needs at least one entry in api.ingress.hosts');
});

test('the guards let the valid neighbours through', async () => {
  await render([], ['connections.existingSecret=mine']);
  await render([], ['postgresql.enabled=true', 'rabbitmq.enabled=true']);
  await render([], [...external, 'controller.enabled=false', 'worker.pool.enabled=false']);
  await render([], [...external, 'worker.shutdownTimeoutMs=30000', 'worker.terminationGracePeriodSeconds=41']);
});

test('every value in values.yaml is documented with `# --` (itself or a parent)', () => {
  const document = parseDocument(readFileSync(join(CHART, 'values.yaml'), 'utf8'));
  const undocumented: string[] = [];
  const documented = (comment: string | null | undefined) => /(^|\n)\s*-- \S/.test(comment ?? '');
  const walk = (map: YAMLMap, prefix: string) => {
    map.items.forEach((pair, index) => {
      const key = `${prefix}${isScalar(pair.key) ? String(pair.key.value) : '?'}`;
      // The comment above a map's first key is stored on the map (or, at the top, on the document).
      const comment = (isScalar(pair.key) ? pair.key.commentBefore : null) ?? (index === 0 ? (prefix ? map.commentBefore : document.commentBefore) : null);
      if (documented(comment)) return;
      if (isMap(pair.value) && pair.value.items.length > 0) walk(pair.value, `${key}.`);
      else undocumented.push(key);
    });
  };
  walk(document.contents as YAMLMap, '');
  assert.equal(undocumented, []);
});

test('every ci values file and k8s/dev-values.yaml passes the schema on its own', async () => {
  for (const file of Object.values(VALUES_FILES)) {
    const result = await template([file]);
    assert.is(result.code, 0, `${file}: ${result.stderr}`);
  }
});

test.run();
