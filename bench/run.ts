// `npm run bench`: measures Conveyor on this machine. Each benchmark gets a fresh database and queue and its
// own API and worker processes; the load comes from a separate process over keep-alive HTTP. `broker` measures
// RabbitMQ alone, the ceiling under everything else. Prints a table and writes bench/results/<time>.json.
// `npm run bench -- --help` lists the options.
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { BrokerJob, BrokerResult } from './broker.ts';
import type { LoadJob, LoadResult } from './load.ts';
import { describeMachine } from './machine.ts';
import { SERVICE_NODE_FLAGS } from '../scripts/node-flags.ts';
import { BenchSystem, cpuOf, type ProcessCost } from './system.ts';

const { values: options } = parseArgs({
  options: {
    only: { type: 'string', default: 'single,batch,e2e,latency,broker' },
    soak: { type: 'boolean', default: false },
    'soak-tasks': { type: 'string', default: '1000000' },
    tasks: { type: 'string', default: '50000' },
    workers: { type: 'string', default: '1' },
    concurrency: { type: 'string', default: '50' },
    'latency-seconds': { type: 'string', default: '20' },
    'broker-messages': { type: 'string', default: '60000' },
    results: { type: 'string', default: join(import.meta.dirname, 'results') },
    source: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});
if (options.help) {
  console.log(`npm run bench -- [--only single,batch,e2e,latency,broker] [--soak] [--soak-tasks 1000000] [--tasks 50000] [--workers 1]
                  [--concurrency 50] [--latency-seconds 20] [--broker-messages 60000] [--results bench/results] [--source]
  --tasks            tasks in the end-to-end run
  --latency-seconds  how long each fixed rate (500/s, 2,000/s) is offered
  --broker-messages  messages through RabbitMQ alone, spread over 1, 2 and 4 queues
  --results          the folder for <time>.json and the services' logs
  --source           runs the services from their TypeScript sources instead of the compiled build (npm run build),
                     which the images run`);
  process.exit(0);
}

/** A numeric option as a positive whole number: a typo must not turn into a benchmark of NaN tasks. */
function count(name: keyof typeof options): number {
  const value = Number(options[name]);
  if (!Number.isSafeInteger(value) || value < 1) {
    console.error(`bench: --${name} must be a positive whole number, not '${options[name]}'`);
    process.exit(2);
  }
  return value;
}
const BENCHMARKS = ['single', 'batch', 'e2e', 'latency', 'broker'] as const;
type Benchmark = (typeof BENCHMARKS)[number];
const isBenchmark = (name: string): name is Benchmark => (BENCHMARKS as readonly string[]).includes(name);
const named = options.only.split(',').filter(Boolean);
const unknown = named.filter((name) => !isBenchmark(name));
if (unknown.length > 0) {
  console.error(`bench: unknown benchmark '${unknown.join("', '")}'; known: ${BENCHMARKS.join(', ')}`);
  process.exit(2);
}
const chosen = named.filter(isBenchmark);
const sizes = {
  tasks: count('tasks'),
  soakTasks: count('soak-tasks'),
  latencySeconds: count('latency-seconds'),
  brokerMessages: count('broker-messages'),
};

const root = join(import.meta.dirname, '..');
const stamp = new Date().toISOString().replace(/[:.]/g, '-');
const resultsDir = options.results;
const logDir = join(resultsDir, stamp);
mkdirSync(logDir, { recursive: true });
const settings = {
  databaseUrl: process.env['DATABASE_URL'] ?? 'postgres://postgres@127.0.0.1:5432/postgres',
  amqpUrl: process.env['AMQP_URL'] ?? 'amqp://guest:guest@127.0.0.1:5672',
  workers: count('workers'),
  workerConcurrency: count('concurrency'),
  logDir,
  compiled: !options.source,
  env: { LOG_LEVEL: process.env['LOG_LEVEL'] ?? 'info' },
};
if (settings.compiled) {
  console.error('bench: compiling (npm run build)…');
  execFileSync(process.execPath, [join(root, 'scripts', 'build.ts')], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
}

type Outcome = {
  name: string;
  figures: Record<string, unknown>;
  costs: ProcessCost[];
  postgresCpuSeconds: number;
  rabbitmqCpuSeconds: number;
  /**
   * Transactions committed in the benchmark's database: with one statement per transaction, the statements sent.
   * Absent where the benchmark has no database (RabbitMQ alone).
   */
  postgresTransactions?: number;
};

/** CPU seconds PostgreSQL and RabbitMQ use from now on, read by calling the answer. */
function serverCpuFromNow(): () => Pick<Outcome, 'postgresCpuSeconds' | 'rabbitmqCpuSeconds'> {
  const [postgres, rabbitmq] = [cpuOf('postgres'), cpuOf('beam.smp')];
  const round = (n: number) => Math.round(n * 100) / 100;
  return () => ({ postgresCpuSeconds: round(cpuOf('postgres') - postgres), rabbitmqCpuSeconds: round(cpuOf('beam.smp') - rabbitmq) });
}

async function commits(system: BenchSystem): Promise<number> {
  const { rows } = await system.db.query<{ n: number }>('SELECT xact_commit::int8::float8 AS n FROM pg_stat_database WHERE datname = current_database()');
  return rows[0]?.n ?? 0;
}

/** Runs one job of a bench script (`load.ts`, `broker.ts`) in its own process, and answers with its result. */
function runJob<R>(script: string, job: unknown): Promise<R> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(import.meta.dirname, script), JSON.stringify(job)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (chunk) => (out += chunk));
    child.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out) as R) : reject(new Error(`${script} exited ${code}`))));
  });
}
const load = (job: LoadJob) => runJob<LoadResult>('load.ts', job);

/** Runs `body` against a fresh system, measuring every process (and PostgreSQL and RabbitMQ) while it runs. */
async function measured(name: string, body: (system: BenchSystem) => Promise<Record<string, unknown>>, withWorkers: boolean): Promise<Outcome> {
  console.error(`bench: ${name}…`);
  const system = await BenchSystem.start(settings);
  try {
    if (withWorkers) await system.startWorkers();
    await system.beginWindow();
    const [serverCpu, tx0] = [serverCpuFromNow(), await commits(system)];
    const figures = await body(system);
    const costs = await system.endWindow();
    // Statistics reach pg_stat_database within a second of each transaction.
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    return { name, figures, costs, ...serverCpu(), postgresTransactions: (await commits(system)) - tx0 };
  } finally {
    await system.stop();
  }
}

async function waitFinished(system: BenchSystem, expected: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { rows } = await system.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM tasks WHERE status IN ('completed', 'failed', 'cancelled')`);
    if ((rows[0]?.n ?? 0) >= expected) return;
    if (Date.now() > deadline) throw new Error(`only ${rows[0]?.n} of ${expected} tasks finished within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

/** Every task completed on its first attempt: the check that makes a throughput figure count. */
async function verify(system: BenchSystem, expected: number): Promise<{ completed: number; firstAttempt: number }> {
  const { rows } = await system.db.query<{ completed: number; first: number; total: number }>(
    `SELECT count(*) FILTER (WHERE status = 'completed')::int AS completed, count(*) FILTER (WHERE attempts = 1)::int AS first, count(*)::int AS total FROM tasks`,
  );
  const row = rows[0] as { completed: number; first: number; total: number };
  if (row.total !== expected || row.completed !== expected || row.first !== expected) {
    throw new Error(`expected ${expected} tasks completed at attempt 1; found ${JSON.stringify(row)}`);
  }
  return { completed: row.completed, firstAttempt: row.first };
}

async function hasBatchEndpoint(system: BenchSystem): Promise<boolean> {
  const res = await fetch(`${system.apiUrl}/api/v1/tasks/batch`, { method: 'POST', headers: { authorization: `Bearer ${system.key}`, 'content-type': 'application/json' }, body: '{"tasks":[]}' });
  await res.arrayBuffer();
  return res.status !== 404 && res.status !== 405;
}

/** Submits `total` echo tasks as fast as the API takes them: in batches of 1,000 when the API has the batch endpoint. */
async function submitAll(system: BenchSystem, total: number): Promise<LoadResult & { mode: string }> {
  if (await hasBatchEndpoint(system)) {
    return { mode: 'batches of 1000', ...(await load({ mode: 'batches', url: system.apiUrl, key: system.key, connections: 4, batchSize: 1000, total })) };
  }
  // Without it, single submits on 64 connections until `total` were accepted.
  const rate = await load({ mode: 'open', url: system.apiUrl, key: system.key, ratePerSecond: 20_000, durationMs: Math.ceil(total / 20) });
  return { mode: 'single submits', ...rate };
}

const SCENARIOS: Record<Benchmark, () => Promise<Outcome[]>> = {
  single: async () => [
    await measured('single submit (64 connections)', async (system) => {
      const r = await load({ mode: 'closed', url: system.apiUrl, key: system.key, connections: 64, warmupMs: 2_000, durationMs: 10_000 });
      return { requestsPerSecond: Math.round((r.requests / r.elapsedMs) * 1000), latencyMs: r.latency, refused: r.refused };
    }, false),
  ],
  batch: async () => [
    await measured('batch submit (1,000 per request, 4 connections)', async (system) => {
      if (!(await hasBatchEndpoint(system))) return { unavailable: 'no POST /api/v1/tasks/batch' };
      const r = await load({ mode: 'batches', url: system.apiUrl, key: system.key, connections: 4, batchSize: 1000, total: 200_000 });
      return { tasksPerSecond: Math.round((r.tasks / r.elapsedMs) * 1000), requestLatencyMs: r.latency, refused: r.refused };
    }, false),
  ],
  e2e: async () => [
    await measured(`end to end (${sizes.tasks} echo tasks)`, async (system) => {
      const total = sizes.tasks;
      const submitted = await submitAll(system, total);
      await waitFinished(system, submitted.tasks, 600_000);
      const { rows } = await system.db.query<{ seconds: number }>(`SELECT extract(epoch FROM max(finished_at) - min(created_at))::float8 AS seconds FROM tasks`);
      const seconds = rows[0]?.seconds ?? 0;
      return { tasks: submitted.tasks, submitMode: submitted.mode, submitSeconds: Math.round(submitted.elapsedMs / 10) / 100, seconds: Math.round(seconds * 100) / 100, tasksPerSecond: Math.round(submitted.tasks / seconds), ...(await verify(system, submitted.tasks)), refused: submitted.refused };
    }, true),
  ],
  latency: async () => [await latencyAt(500), await latencyAt(2000)],
  broker: async () => {
    const outcomes: Outcome[] = [];
    for (const backlog of [false, true]) for (const queues of [1, 2, 4]) outcomes.push(await brokerAlone(queues, backlog));
    return outcomes;
  },
};

/**
 * RabbitMQ alone, without Conveyor: the rate of persistent task messages through `queues` priority queues,
 * published under confirms and consumed with acks, either at once or with the queue filled first (see
 * {@link BrokerJob}). The ceiling one queue sets, and what more queues lift.
 */
async function brokerAlone(queues: number, backlog: boolean): Promise<Outcome> {
  const name = `RabbitMQ alone (${queues} queue${queues > 1 ? 's' : ''}, ${sizes.brokerMessages} messages, ${backlog ? 'published first, then consumed' : 'consumed as published'})`;
  console.error(`bench: ${name}…`);
  const serverCpu = serverCpuFromNow();
  const job: BrokerJob = { amqpUrl: settings.amqpUrl, queues, messages: sizes.brokerMessages, inFlightPerQueue: 256, backlog };
  const result = await runJob<BrokerResult>('broker.ts', job);
  return { name, figures: result, costs: [], ...serverCpu() };
}

/** Submit→start and submit→complete percentiles at a fixed offered rate, from the tasks' own timestamps. */
function latencyAt(rate: number): Promise<Outcome> {
  return measured(`latency at ${rate} tasks/s (${sizes.latencySeconds} s)`, async (system) => {
    const r = await load({ mode: 'open', url: system.apiUrl, key: system.key, ratePerSecond: rate, durationMs: sizes.latencySeconds * 1000 });
    await waitFinished(system, r.tasks, 120_000);
    const percentiles = async (interval: string, from = 'tasks') => {
      const { rows } = await system.db.query<{ p: number[] }>(
        `SELECT percentile_disc(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY extract(epoch FROM ${interval}) * 1000)::float8[] AS p FROM ${from}`,
      );
      const [p50, p95, p99] = (rows[0]?.p ?? []).map((ms) => Math.round(ms * 10) / 10);
      return { p50, p95, p99 };
    };
    // Where submit→start goes: storing to the recorded confirm, and the confirm to the claim (when the worker
    // was not first; a worker usually claims the task before the publisher records the confirm).
    const confirms = `tasks JOIN task_events e ON e.task_id = tasks.id AND e.kind = 'published'`;
    return {
      offered: rate,
      achieved: Math.round((r.tasks / r.elapsedMs) * 1000),
      submitToStartMs: await percentiles('started_at - created_at'),
      submitToCompleteMs: await percentiles('finished_at - created_at'),
      submitToConfirmRecordedMs: await percentiles('e.at - created_at', confirms),
      confirmRecordedToStartMs: await percentiles('started_at - e.at', `${confirms} WHERE started_at > e.at`),
      submitLatencyMs: r.latency,
      ...(await verify(system, r.tasks)),
      refused: r.refused,
    };
  }, true);
}

/** A long run with memory sampled every 10 s: resident memory must level off, not grow with the task count. */
function soak(total: number): Promise<Outcome> {
  return measured(`soak (${total} tasks)`, async (system) => {
    const samples: { atSeconds: number; rssMb: Record<string, number> }[] = [];
    const start = Date.now();
    const sampler = setInterval(() => samples.push({ atSeconds: Math.round((Date.now() - start) / 1000), rssMb: system.rss() }), 10_000);
    try {
      const submitted = await submitAll(system, total);
      await waitFinished(system, submitted.tasks, 3_600_000);
      samples.push({ atSeconds: Math.round((Date.now() - start) / 1000), rssMb: system.rss() });
      const third = Math.floor(samples.length / 3);
      const growth = Object.fromEntries(Object.keys(samples[0]?.rssMb ?? {}).map((name) => {
        const at = (i: number) => samples[i]?.rssMb[name] ?? 0;
        return [name, { afterFirstThirdMb: at(third), endMb: at(samples.length - 1), peakMb: Math.max(...samples.map((s) => s.rssMb[name] ?? 0)) }];
      }));
      return { tasks: submitted.tasks, seconds: Math.round((Date.now() - start) / 1000), rssGrowth: growth, samples, ...(await verify(system, submitted.tasks)) };
    } finally {
      clearInterval(sampler);
    }
  }, true);
}

const machine = await describeMachine(settings.databaseUrl, settings.amqpUrl);
const outcomes: Outcome[] = [];
for (const name of chosen) outcomes.push(...(await SCENARIOS[name]()));
if (options.soak) outcomes.push(await soak(sizes.soakTasks));

const configuration = { ...settings, serviceNodeFlags: SERVICE_NODE_FLAGS, env: { ...settings.env, RATE_LIMIT_PER_SECOND: '0', AUTH_MODE: 'apikey' } };
const run = { at: new Date().toISOString(), machine, configuration, outcomes };
const file = join(resultsDir, `${stamp}.json`);
writeFileSync(file, `${JSON.stringify(run, null, 2)}\n`);
printTable(run.machine, configuration, outcomes);
console.log(`\nresults: ${file}\nservice logs: ${logDir}`);

function printTable(machine: Record<string, unknown>, config: typeof configuration, rows: Outcome[]): void {
  console.log(`\n${Object.entries(machine).map(([k, v]) => `${k}: ${v}`).join(' | ')}`);
  const services = `${config.workers} worker(s) at concurrency ${config.workerConcurrency}, ${config.compiled ? 'compiled' : 'from source'}`;
  console.log(`services: ${services}, node ${config.serviceNodeFlags.join(' ')}\n`);
  for (const row of rows) {
    console.log(`${row.name}`);
    const { samples: _samples, ...figures } = row.figures as { samples?: unknown };
    console.log(`  ${JSON.stringify(figures)}`);
    for (const cost of row.costs) console.log(`  ${cost.name}: peak RSS ${cost.peakRssMb} MB, CPU ${cost.cpuSeconds} s, event-loop delay p99 ${cost.eventLoopP99Ms ?? '?'} ms`);
    const transactions = row.postgresTransactions === undefined ? '' : `, ${row.postgresTransactions} transactions`;
    console.log(`  PostgreSQL CPU ${row.postgresCpuSeconds} s${transactions}; RabbitMQ CPU ${row.rabbitmqCpuSeconds} s`);
  }
}
