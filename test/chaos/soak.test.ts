// A seeded soak: a few thousand mixed tasks through an API and two workers while RabbitMQ and PostgreSQL are cut
// or silently blackholed, workers are SIGKILLed and restarted, and clients cancel tasks, all at random moments.
// The seed (printed; SOAK_SEED to replay) fixes the task mix and the fault schedule; the timing of a real run
// on real services is not reproducible, so the invariants hold for any interleaving.
import { randomInt } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { TaskStatus } from '../../services/core/src/tasks/state.ts';
import { matches, type ServiceProcess } from '../support/processes.ts';
import { call, ChaosWorld, historyProblems, type TaskRow, TASKS, TERMINAL } from './kit.ts';
import { type Cancel, Journal, type Plan, Rng, WorkerPool } from './soak-rig.ts';

const SEED = Number(process.env['SOAK_SEED'] ?? randomInt(1, 2 ** 31));
const TASK_COUNT = Number(process.env['SOAK_TASKS'] ?? 2_000);
const FAULT_WINDOW_MS = Number(process.env['SOAK_FAULT_MS'] ?? 40_000);
const LEASE_MS = 4_000;
const QUIESCENCE_MS = 45_000;
// A client keeps retrying a refused submit (same idempotency key) until this long after the faults end.
const SUBMIT_GRACE_MS = 20_000;
const SUBMITTERS = 8;

type Ctx = { world: ChaosWorld; pool: WorkerPool | null };
const test = suite<Ctx>('chaos: soak');

test.before(async (ctx) => {
  ctx.world = await ChaosWorld.create({
    proxyAmqp: true,
    proxyPostgres: true,
    heartbeatSeconds: 2,
    env: { TASK_LEASE_MS: String(LEASE_MS), PUBLISH_TIMEOUT_MS: '1000', CANCEL_GRACE_MS: '500', WORKER_CONCURRENCY: '8' },
  });
  ctx.pool = null;
});

test.after(async (ctx) => {
  // First, so that the workers killed by the teardown are not restarted.
  ctx.pool?.stop();
  await ctx.world.teardown();
});

function planTasks(rng: Rng): Plan[] {
  return Array.from({ length: TASK_COUNT }, (_, index) => {
    const roll = rng.next();
    const [type, payload] =
      roll < 0.4 ? ['echo', { n: index, tag: rng.int(0, 1e6) }] : roll < 0.8 ? ['sleep', { ms: rng.int(0, 50) }] : ['fail', { message: `soak failure ${index}` }];
    const backoff = { type: 'fixed', delayMs: rng.pick([0, 50, 100, 200]), jitter: false };
    return { index, key: `soak-${SEED}-${index}`, body: { type, payload, priority: rng.int(0, 9), maxAttempts: rng.int(1, 3), backoff } };
  });
}

async function submitAll(baseUrl: string, plans: readonly Plan[], journal: Journal, startedAt: number): Promise<void> {
  let next = 0;
  const giveUpAt = startedAt + FAULT_WINDOW_MS + SUBMIT_GRACE_MS;
  const lane = async () => {
    for (let plan = plans[next++]; plan; plan = plans[next++]) {
      // Spread over the fault window, so that every fault finds submits, relays and runs in flight.
      const due = startedAt + (plan.index * FAULT_WINDOW_MS) / plans.length;
      if (due > Date.now()) await delay(due - Date.now());
      await submitOne(baseUrl, plan, journal, giveUpAt);
    }
  };
  await Promise.all(Array.from({ length: SUBMITTERS }, lane));
}

/** A careful client: retries a refused or unanswered submit with the same idempotency key. */
async function submitOne(baseUrl: string, plan: Plan, journal: Journal, giveUpAt: number): Promise<void> {
  let refusal: string | null = null;
  while (Date.now() < giveUpAt) {
    const res = await call(baseUrl, 'POST', TASKS, plan.body, { 'Idempotency-Key': plan.key }).catch((error: Error) => error);
    if (!(res instanceof Error) && (res.status === 201 || res.status === 200)) {
      journal.accepted.set(res.body.id as string, plan);
      // 200 after a refusal: an earlier try was stored although its answer said otherwise (or never came).
      if (res.status === 200 && refusal) journal.replayed.set(plan.key, refusal);
      if (res.status === 200 && !refusal) journal.unexpected.push(`first submit of ${plan.key} answered 200`);
      return;
    }
    if (!(res instanceof Error) && res.status !== 503) {
      journal.unexpected.push(`submit ${plan.key}: ${res.status} ${res.text}`);
      return;
    }
    refusal = res instanceof Error ? `no answer (${res.name}: ${res.message})` : `503 ${String(res.body?.detail)}`;
    journal.refusedSubmits.count += 1;
    await delay(250);
  }
  journal.unexpected.push(`submit ${plan.key} never accepted`);
}

async function networkFaults(world: ChaosWorld, rng: Rng, journal: Journal, until: number): Promise<void> {
  const amqp = world.amqpProxy as NonNullable<typeof world.amqpProxy>;
  const pg = world.pgProxy as NonNullable<typeof world.pgProxy>;
  const kinds = [
    { kind: 'amqp-cut', proxy: amqp, how: 'cut', ms: [500, 4_000] },
    // Long enough, sometimes, for the 2 s heartbeats to declare the connection dead.
    { kind: 'amqp-blackhole', proxy: amqp, how: 'blackhole', ms: [1_000, 7_000] },
    { kind: 'pg-cut', proxy: pg, how: 'cut', ms: [500, 4_000] },
    { kind: 'pg-blackhole', proxy: pg, how: 'blackhole', ms: [500, 3_000] },
  ] as const;
  while (Date.now() < until) {
    await delay(rng.int(500, 2_500));
    if (Date.now() >= until) return;
    const fault = rng.pick(kinds);
    const from = Date.now();
    if (fault.how === 'cut') fault.proxy.cut();
    else fault.proxy.blackhole();
    await delay(Math.min(rng.int(fault.ms[0], fault.ms[1]), Math.max(0, until - Date.now())));
    fault.proxy.heal();
    journal.windows.push({ kind: fault.kind, from, to: Date.now() });
  }
}

async function workerKills(pool: WorkerPool, rng: Rng, until: number): Promise<void> {
  for (;;) {
    await delay(rng.int(2_500, 7_000));
    if (Date.now() >= until) return;
    await pool.kill(rng.int(0, 1));
  }
}

async function cancels(baseUrl: string, rng: Rng, journal: Journal, until: number): Promise<void> {
  while (Date.now() < until) {
    await delay(rng.int(100, 500));
    const ids = [...journal.accepted.keys()];
    if (ids.length === 0) continue;
    const id = ids[Math.floor(rng.next() * ids.length)] as string;
    const res = await call(baseUrl, 'POST', `${TASKS}/${id}/cancel`).catch(() => null);
    const attempts = res && (res.status === 200 || res.status === 202) ? (res.body.attempts as number) : null;
    journal.cancels.push({ id, status: res ? res.status : 'error', attempts });
    if (res && ![200, 202, 409, 503].includes(res.status)) journal.unexpected.push(`cancel ${id}: ${res.status} ${res.text}`);
  }
}

type Start = { attempt: number; workerId: string; at: number };

/** Every 'task started' line of every worker process that ever ran, by task. */
function startsByTask(workers: readonly ServiceProcess[]): Map<string, Start[]> {
  const starts = new Map<string, Start[]>();
  for (const worker of workers) {
    for (const line of worker.find(matches('task started'))) {
      const list = starts.get(line['taskId'] as string) ?? [];
      list.push({ attempt: line['attempt'] as number, workerId: line['workerId'] as string, at: Date.parse(line['time'] as string) });
      starts.set(line['taskId'] as string, list);
    }
  }
  return starts;
}

/**
 * A 'worker lost' attempt is explained when its worker was killed after starting it, or when PostgreSQL was
 * unreachable while it ran (the heartbeat could not renew the lease). Anything else ran a handler twice for no reason.
 */
function workerLostExplained(journal: Journal, start: Start | undefined, lostAt: number): boolean {
  const pgDown = (from: number, to: number) => journal.windows.some((w) => w.kind.startsWith('pg') && w.from <= to && w.to >= from);
  if (!start) {
    // Killed between the claim and its log line: some kill or outage shortly before the lease ran out.
    const from = lostAt - LEASE_MS - 3_000;
    return journal.kills.some((k) => k.at >= from && k.at <= lostAt) || pgDown(from, lostAt);
  }
  return journal.kills.some((k) => k.workerId === start.workerId && k.at >= start.at) || pgDown(start.at, lostAt);
}

/** Problems with one task's outcome given what it was and what was asked of it. */
function outcomeProblems(row: TaskRow, plan: Plan, cancelled: readonly Cancel[]): string[] {
  const problems: string[] = [];
  const lost = (e: { message: string }) => e.message === 'worker lost';
  const failure = (plan.body.payload as { message?: string }).message;
  if (row.status === TaskStatus.completed) {
    if (plan.body.type === 'fail') problems.push('a fail task completed');
    const expected = plan.body.type === 'sleep' ? { sleptMs: (plan.body.payload as { ms: number }).ms } : plan.body.payload;
    if (JSON.stringify(row.result) !== JSON.stringify(expected)) problems.push(`result ${JSON.stringify(row.result)}`);
  }
  if (row.status === TaskStatus.failed) {
    if (row.attempts !== row.maxAttempts) problems.push(`failed after ${row.attempts} of ${row.maxAttempts} attempts`);
    if (!row.errors.every((e) => lost(e) || (plan.body.type === 'fail' && e.message === failure))) problems.push(`errors ${JSON.stringify(row.errors)}`);
  }
  if (row.status === TaskStatus.cancelled && cancelled.length === 0) problems.push('cancelled, but nobody asked');
  if (cancelled.some((c) => c.status === 200) && row.status !== TaskStatus.cancelled) problems.push(`cancel answered 200 but the task is ${row.status}`);
  // 202: the running attempt may still end on its own, but no attempt may start after an accepted cancel.
  const accepted = cancelled.filter((c) => c.attempts !== null).map((c) => c.attempts as number);
  if (accepted.length > 0 && row.attempts > Math.min(...accepted)) problems.push(`attempt ${row.attempts} ran after a cancel accepted at attempt ${Math.min(...accepted)}`);
  return problems;
}

test(`seeded soak: ${TASK_COUNT} tasks through random broker, database, worker and cancel faults end in states their histories explain`, async (ctx) => {
  const { world } = ctx;
  console.log(`  soak seed ${SEED} (SOAK_SEED=${SEED} replays this schedule), ${TASK_COUNT} tasks, ${FAULT_WINDOW_MS} ms of faults`);
  const { api, baseUrl } = await world.startApi();
  const journal = new Journal();
  const pool = new WorkerPool(world, journal);
  ctx.pool = pool;
  pool.spawn(0);
  pool.spawn(1);
  await pool.ready(20_000);

  const plans = planTasks(new Rng(SEED));
  const startedAt = Date.now();
  const until = startedAt + FAULT_WINDOW_MS;
  const submitting = submitAll(baseUrl, plans, journal, startedAt);
  await Promise.all([
    networkFaults(world, new Rng(SEED ^ 0x5eed1), journal, until),
    workerKills(pool, new Rng(SEED ^ 0x5eed2), until),
    cancels(baseUrl, new Rng(SEED ^ 0x5eed3), journal, until),
  ]);
  world.amqpProxy?.heal();
  world.pgProxy?.heal();
  await submitting;
  await pool.ready(30_000);

  const quiet = Date.now();
  // A timeout is reported below with everything else (the stuck tasks are listed there).
  const settled = await world.settle(await world.rows().then((rows) => rows.map((r) => r.id)), QUIESCENCE_MS, [api]).then(() => true, () => false);
  const quiescentMs = settled ? Date.now() - quiet : Number.POSITIVE_INFINITY;
  pool.stop();
  const rows = await world.rows();
  report(journal, rows, api, pool.all, quiescentMs);
  assert.ok(api.alive, `the API died:\n${api.tail()}`);
});

/** Where the API's refused submits were raised: the chain of our functions in each 503's stack, with counts. */
function refusalSources(api: ServiceProcess): string[] {
  const chains = api
    .find((line) => line.msg === 'request failed' && line['path'] === TASKS && (line['err'] as { status?: number } | undefined)?.status === 503)
    .map((line) => {
      const stack = String((line['err'] as { stack?: string }).stack ?? '');
      return [...stack.matchAll(/at (?:async )?([\w.]+) \([^)]*services\//g)].map((m) => m[1]).join(' < ');
    });
  const counts = Map.groupBy(chains, (chain) => chain);
  return [...counts].map(([chain, list]) => `${list.length}× ${chain}`);
}

function report(journal: Journal, rows: readonly TaskRow[], api: ServiceProcess, workers: readonly ServiceProcess[], quiescentMs: number): void {
  const byId = new Map(rows.map((row) => [row.id, row]));
  const cancelsById = Map.groupBy(journal.cancels, (c) => c.id);
  const starts = startsByTask(workers);
  const lost = [...journal.accepted.keys()].filter((id) => !byId.has(id));
  const foreign = rows.filter((row) => !journal.accepted.has(row.id)).map((row) => `${row.id} (${row.idempotencyKey})`);
  const stuck = rows
    .filter((row) => !TERMINAL.includes(row.status))
    .map((row) => `${row.id} ${row.type} ${row.status} attempts ${row.attempts}/${row.maxAttempts} errors ${JSON.stringify(row.errors.map((e) => [e.attempt, e.message, e.at]))}`);
  const problems: string[] = [];
  let duplicates = 0;
  let workerLost = 0;
  for (const row of rows) {
    const plan = journal.accepted.get(row.id);
    for (const p of historyProblems(row)) problems.push(`${row.id}: ${p}`);
    if (plan) for (const p of outcomeProblems(row, plan, cancelsById.get(row.id) ?? [])) problems.push(`${row.id} (${plan.body.type}): ${p}`);
    const ran = starts.get(row.id) ?? [];
    // Each claim counts an attempt, so a handler started more often than attempts were counted ran twice unasked.
    const attemptsStarted = new Set(ran.map((s) => s.attempt));
    duplicates += ran.length - attemptsStarted.size + Math.max(0, attemptsStarted.size - row.attempts);
    for (const error of row.errors.filter((e) => e.message === 'worker lost')) {
      workerLost += 1;
      const start = ran.find((s) => s.attempt === error.attempt);
      if (!workerLostExplained(journal, start, Date.parse(error.at ?? ''))) {
        duplicates += 1;
        problems.push(`${row.id}: attempt ${error.attempt} lost its worker (${start?.workerId ?? 'not logged'}) with no kill or outage to explain it`);
      }
    }
  }
  // RabbitMQ here never loses a confirmed message (durable queue, persistent messages, nobody purges it), so a
  // reconciliation means a task was marked queued with no message behind it, and sat there for QUEUED_RECONCILE_MS.
  const reconciled = api.find(matches('queued tasks missing from RabbitMQ sent back to the relay')).reduce((n, line) => n + Number(line['republished']), 0);
  // The API logs 'task submitted' once the row is stored: a refusal after that line broke the submit's promise.
  const idByKey = new Map([...journal.accepted].map(([id, plan]) => [plan.key, id]));
  const storedThenRefused = [...journal.replayed.keys()].filter((key) => api.find(matches('task submitted', { taskId: idByKey.get(key) })).length > 0);
  const statuses = Object.fromEntries([TaskStatus.completed, TaskStatus.failed, TaskStatus.cancelled].map((s) => [s, rows.filter((r) => r.status === s).length]));
  const faults = Object.entries(journal.faults()).map(([kind, n]) => `${kind}=${n}`).join(' ');
  console.log(
    `  SOAK seed=${SEED} tasks=${rows.length} accepted=${journal.accepted.size} ${JSON.stringify(statuses)} faults: ${faults}` +
      ` | refused submits retried=${journal.refusedSubmits.count} stored-despite-error=${journal.replayed.size}${journal.replayed.size ? ` (${[...new Set(journal.replayed.values())].join('; ')})` : ''}` +
      ` worker restarts after failed start=${journal.crashes.length} retries after worker lost=${workerLost}` +
      ` (after 'task submitted' was logged: ${storedThenRefused.length}) queued-without-message republished=${reconciled}` +
      ` | lost=${lost.length} stuck=${stuck.length} duplicates=${duplicates} quiescent ${quiescentMs} ms after the heal`,
  );
  assert.equal(journal.unexpected, [], 'unexpected answers');
  assert.equal(lost, [], 'accepted tasks missing from PostgreSQL');
  assert.equal(foreign, [], 'tasks stored that no submit was told about');
  assert.equal(stuck.slice(0, 10), [], `${stuck.length} tasks not finished ${QUIESCENCE_MS} ms after the heal`);
  assert.equal(problems.slice(0, 20), [], `${problems.length} tasks whose history does not explain their outcome`);
  assert.is(duplicates, 0, 'executions no fault explains');
  assert.is(reconciled, 0, 'tasks marked queued although RabbitMQ held no message for them');
  assert.equal(storedThenRefused, [], `submits answered 503 after their task was stored and logged; 503s raised in: ${refusalSources(api).join('; ')}`);
  const unexplainedCrashes = journal.crashes.filter((c) => !journal.windows.some((w) => w.kind.startsWith('pg') && w.from <= c.at && w.to >= c.at - 10_000));
  assert.equal(unexplainedCrashes.map((c) => `${c.workerId} exited ${c.code}:\n${c.tail}`), [], 'workers that died with PostgreSQL reachable');
}

test.run();
