import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { runScript, type ScriptRun } from '../support/processes.ts';
import { type Services, services } from '../support/services.ts';

type Ctx = { services: Services; results: string };
const test = suite<Ctx>('bench: npm run bench, at a small size');

const RUN_MS = 240_000;

test.before(async (ctx) => {
  ctx.services = await services();
  ctx.results = await mkdtemp(join(tmpdir(), 'conveyor-bench-'));
});

test.after(async (ctx) => {
  await rm(ctx.results, { recursive: true, force: true });
});

/** `npm run bench -- …args`, as a child process on this Node, against the services the tests use. */
function bench(ctx: Ctx, ...args: string[]): Promise<ScriptRun> {
  return runScript('bench/run.ts', ['--results', ctx.results, ...args], { DATABASE_URL: ctx.services.databaseUrl, AMQP_URL: ctx.services.amqpUrl }, RUN_MS);
}

async function benchDatabases(ctx: Ctx): Promise<string[]> {
  const client = new pg.Client({ connectionString: ctx.services.databaseUrl });
  await client.connect();
  try {
    const { rows } = await client.query<{ datname: string }>(`SELECT datname FROM pg_database WHERE datname LIKE 'conveyor_bench_%'`);
    return rows.map((row) => row.datname).sort();
  } finally {
    await client.end();
  }
}

type Percentiles = { p50: number; p95: number; p99: number };
type Outcome = {
  name: string;
  figures: Record<string, unknown>;
  costs: { name: string; peakRssMb: number; cpuSeconds: number; eventLoopP99Ms: number | null }[];
  postgresCpuSeconds: number;
  rabbitmqCpuSeconds: number;
  postgresTransactions?: number;
};
type Results = { machine: Record<string, unknown>; configuration: Record<string, unknown>; outcomes: Outcome[] };

function assertPercentiles(value: unknown, what: string): void {
  const p = value as Percentiles;
  for (const key of ['p50', 'p95', 'p99'] as const) assert.ok(Number.isFinite(p?.[key]) && p[key] >= 0, `${what}.${key}: ${JSON.stringify(value)}`);
  assert.ok(p.p50 <= p.p95 && p.p95 <= p.p99, `${what} out of order: ${JSON.stringify(value)}`);
}

test('end to end and latency: every task checked in the database, each process measured, the JSON written, nothing left behind', async (ctx) => {
  const before = await benchDatabases(ctx);
  const run = await bench(ctx, '--only', 'e2e,latency,broker', '--tasks', '2000', '--latency-seconds', '2', '--broker-messages', '3000');
  assert.is(run.code, 0, run.stderr);

  const file = /^results: (.+\.json)$/m.exec(run.stdout)?.[1];
  assert.ok(file?.startsWith(ctx.results), run.stdout);
  const results = JSON.parse(await readFile(file as string, 'utf8')) as Results;

  assert.ok(Number(results.machine['cpus']) >= 1);
  assert.match(String(results.machine['node']), /^v\d+\./);
  assert.match(String(results.machine['postgresql']), /^\d+\.\d+/);
  assert.match(String(results.machine['rabbitmq']), /^\d+\.\d+\.\d+/);
  assert.is(results.configuration['workers'], 1);
  assert.is(results.configuration['compiled'], true);

  assert.equal(results.outcomes.map((o) => o.name), [
    'end to end (2000 echo tasks)',
    'latency at 500 tasks/s (2 s)',
    'latency at 2000 tasks/s (2 s)',
    ...['consumed as published', 'published first, then consumed'].flatMap((how) => [
      `RabbitMQ alone (1 queue, 3000 messages, ${how})`,
      `RabbitMQ alone (2 queues, 3000 messages, ${how})`,
      `RabbitMQ alone (4 queues, 3000 messages, ${how})`,
    ]),
  ]);
  const [e2e, at500, , ...broker] = results.outcomes as [Outcome, Outcome, Outcome, ...Outcome[]];
  assert.is(e2e.figures['tasks'], 2000);
  assert.is(e2e.figures['completed'], 2000);
  assert.is(e2e.figures['firstAttempt'], 2000);
  assert.is(e2e.figures['submitMode'], 'batches of 1000');
  assert.ok(Number(e2e.figures['tasksPerSecond']) > 0);

  // 500/s for 2 s: the open-loop generator offers 1,000 tasks; each one accepted is checked completed on attempt 1.
  assert.is(at500.figures['offered'], 500);
  assert.ok(Number(at500.figures['completed']) >= 500, JSON.stringify(at500.figures));
  assert.is(at500.figures['completed'], at500.figures['firstAttempt']);
  assertPercentiles(at500.figures['submitToStartMs'], 'submitToStartMs');
  assertPercentiles(at500.figures['submitToCompleteMs'], 'submitToCompleteMs');
  assertPercentiles(at500.figures['submitLatencyMs'], 'submitLatencyMs');
  const start = at500.figures['submitToStartMs'] as Percentiles;
  const complete = at500.figures['submitToCompleteMs'] as Percentiles;
  assert.ok(start.p50 <= complete.p50, 'a task completes after it starts');

  // RabbitMQ alone: every message published under confirms was consumed, over each number of queues. (Its CPU
  // is read from this machine's processes, so it is not asserted: RabbitMQ may run elsewhere.)
  for (const [n, outcome] of broker.entries()) {
    assert.is(outcome.figures['queues'], [1, 2, 4][n % 3]);
    assert.is(outcome.figures['backlog'], n >= 3);
    if (n >= 3) assert.ok(Number(outcome.figures['publishedPerSecond']) > 0 && Number(outcome.figures['consumedPerSecond']) > 0, JSON.stringify(outcome.figures));
    assert.ok(Number(outcome.figures['messages']) >= 3000, JSON.stringify(outcome.figures));
    assert.ok(Number(outcome.figures['perSecond']) > 0, JSON.stringify(outcome.figures));
    assert.is(outcome.postgresTransactions, undefined, 'no database, so no transaction count');
  }

  for (const outcome of results.outcomes.slice(0, 3)) {
    assert.equal(outcome.costs.map((c) => c.name), ['api', 'worker-0'], outcome.name);
    for (const cost of outcome.costs) {
      assert.ok(cost.peakRssMb > 20, `${outcome.name} ${cost.name}: ${JSON.stringify(cost)}`);
      assert.ok(cost.cpuSeconds > 0, `${outcome.name} ${cost.name}: ${JSON.stringify(cost)}`);
      assert.ok(Number.isFinite(cost.eventLoopP99Ms), `${outcome.name} ${cost.name}: no event-loop delay read`);
    }
    assert.ok((outcome.postgresTransactions ?? 0) > 0, outcome.name);
  }
  assert.match(run.stdout, /^end to end \(2000 echo tasks\)$/m);
  assert.match(run.stdout, /^ {2}api: peak RSS \d+ MB, CPU [\d.]+ s, event-loop delay p99 [\d.]+ ms$/m);

  // Every request was answered and read to its end: the API logged no failure (a client that hung up on a
  // 1,000-task answer made its write fail with EPIPE).
  const apiLog = await readFile(join((file as string).replace(/\.json$/, ''), 'api.log'), 'utf8');
  assert.ok(apiLog.includes('"msg":"listening"'), 'the API log was written');
  assert.equal(apiLog.split('\n').filter((line) => line.includes('"level":"error"')), []);

  // Each benchmark's database is dropped when it ends.
  assert.equal(await benchDatabases(ctx), before);
});

test('a mistyped option stops the bench before it measures anything', async (ctx) => {
  const typo = await bench(ctx, '--only', 'e2e,latncy');
  assert.is(typo.code, 2);
  assert.match(typo.stderr, /unknown benchmark 'latncy'; known: single, batch, e2e, latency/);
  const notANumber = await bench(ctx, '--tasks', '50k');
  assert.is(notANumber.code, 2);
  assert.match(notANumber.stderr, /--tasks must be a positive whole number, not '50k'/);
  assert.not.match(typo.stdout + notANumber.stdout, /results:/);
});

test.run();
