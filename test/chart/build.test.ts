import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { SERVICE_NODE_FLAGS } from '../../scripts/node-flags.ts';
import { controlExchange } from '../../services/core/src/queue/control.ts';
import { deleteExchanges, deleteQueues, dropDatabase, freshDatabaseUrl, freshQueueName } from '../support/isolation.ts';
import { killAll, ROOT, spawnService } from '../support/processes.ts';
import { services } from '../support/services.ts';
import { run } from './helm.ts';

const test = suite('chart: npm run build output (what the images run)');

const dist = join(ROOT, 'dist');
let databaseUrl = '';
let queue = '';

test.before(async () => {
  // The real script, as the Dockerfile's build stage runs it.
  const build = await run('npm', ['run', 'build'], 180_000);
  assert.is(build.code, 0, `${build.stdout}\n${build.stderr}`);
  databaseUrl = await freshDatabaseUrl();
  queue = freshQueueName();
});

test.after(async () => {
  await killAll();
  await dropDatabase(databaseUrl);
  await deleteQueues([queue]);
  await deleteExchanges([controlExchange(queue)]);
});

test('dist/ holds the three entry points as JavaScript and the migrations beside migrate.js', () => {
  for (const service of ['api', 'worker', 'controller']) {
    assert.ok(existsSync(join(dist, 'services', service, 'src', 'main.js')), `no dist/services/${service}/src/main.js`);
  }
  const migrate = join(dist, 'services', 'core', 'src', 'db');
  assert.ok(existsSync(join(migrate, 'migrate.js')));
  const sources = readdirSync(join(ROOT, 'services', 'core', 'src', 'db', 'migrations'));
  assert.equal(readdirSync(join(migrate, 'migrations')).sort(), sources.filter((file) => file.endsWith('.sql')).sort());
  const ts = readdirSync(dist, { recursive: true }).map(String).filter((file) => file.endsWith('.ts'));
  assert.equal(ts, [], 'TypeScript sources in dist/');
});

test('the image runs the services with the V8 flags npm start and the bench use', () => {
  const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
  const commands = [...dockerfile.matchAll(/^CMD (\[.*\])$/gm)].map((match) => JSON.parse(match[1] as string) as string[]);
  assert.equal(
    commands,
    ['controller', 'worker', 'api'].map((service) => ['node', ...SERVICE_NODE_FLAGS, `dist/services/${service}/src/main.js`]),
  );
});

test('node dist/services/api/src/main.js migrates, listens, serves /healthz and stops cleanly on SIGTERM', async () => {
  const { amqpUrl } = await services();
  const api = spawnService('api (dist)', 'dist/services/api/src/main.js', {
    DATABASE_URL: databaseUrl,
    AMQP_URL: amqpUrl,
    TASKS_QUEUE: queue,
    HOST: '127.0.0.1',
    PORT: '0',
    LOG_LEVEL: 'info',
  });
  const listening = await api.waitForMessage('listening', {}, 30_000);
  const health = await fetch(`http://127.0.0.1:${String(listening['port'])}/healthz`, { signal: AbortSignal.timeout(5_000) });
  assert.is(health.status, 200);
  const exit = await api.stop('SIGTERM', 30_000);
  assert.equal(exit, { code: 0, signal: null }, api.tail());
  assert.ok(api.find((line) => line.msg === 'stopped').length === 1, api.tail());
});

test.run();
