// The load generator, run as its own process so that it does not share an event loop with what it measures.
// Reads one JSON job from argv, drives it over keep-alive HTTP (undici), prints one JSON result line.
import { Pool } from 'undici';
import { LatencyRecorder, type LatencySummary } from './latency.ts';

export type LoadJob =
  | { mode: 'closed'; url: string; key: string; connections: number; warmupMs: number; durationMs: number }
  | { mode: 'batches'; url: string; key: string; connections: number; batchSize: number; total: number }
  | { mode: 'open'; url: string; key: string; ratePerSecond: number; durationMs: number };

export type LoadResult = {
  requests: number;
  tasks: number;
  elapsedMs: number;
  /** Answers that were not the expected 201, by status (`error` when the request itself failed). */
  refused: Record<string, number>;
  latency: LatencySummary;
};

const ECHO = JSON.stringify({ type: 'echo', payload: { n: 1 } });

/** One POST; resolves to the status, or `error` when no answer came. */
async function post(pool: Pool, key: string, path: string, body: string): Promise<string> {
  try {
    const response = await pool.request({
      method: 'POST',
      path,
      headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
      body,
    });
    // Read to the end, as a client would: dump() gives up past 128 KiB (a 1,000-task answer is larger) and
    // destroys the connection, so every batch would pay for a new one and the API's write would fail.
    for await (const _chunk of response.body);
    return String(response.statusCode);
  } catch {
    return 'error';
  }
}

/** Sends `send` once per call and records its latency and outcome. */
function recorder() {
  const latency = new LatencyRecorder();
  const refused: Record<string, number> = {};
  let requests = 0;
  return {
    async time(send: () => Promise<string>): Promise<boolean> {
      const start = performance.now();
      const status = await send();
      latency.record(performance.now() - start);
      requests += 1;
      if (status === '201') return true;
      refused[status] = (refused[status] ?? 0) + 1;
      return false;
    },
    result: (tasks: number, elapsedMs: number): LoadResult => ({ requests, tasks, elapsedMs, refused, latency: latency.summary() }),
  };
}

/** Each connection sends its next request as soon as the last one is answered, for `durationMs` after a warm-up. */
async function closed(job: Extract<LoadJob, { mode: 'closed' }>): Promise<LoadResult> {
  const pool = new Pool(job.url, { connections: job.connections });
  const send = () => post(pool, job.key, '/api/v1/tasks', ECHO);
  const warmupEnd = performance.now() + job.warmupMs;
  await Promise.all(Array.from({ length: job.connections }, async () => {
    while (performance.now() < warmupEnd) await send();
  }));
  const measured = recorder();
  const start = performance.now();
  const end = start + job.durationMs;
  let tasks = 0;
  await Promise.all(Array.from({ length: job.connections }, async () => {
    while (performance.now() < end) if (await measured.time(send)) tasks += 1;
  }));
  await pool.close();
  return measured.result(tasks, performance.now() - start);
}

/** `total` tasks in batches of `batchSize` on `connections` connections, through the batch endpoint. */
async function batches(job: Extract<LoadJob, { mode: 'batches' }>): Promise<LoadResult> {
  const pool = new Pool(job.url, { connections: job.connections });
  const body = JSON.stringify({ tasks: Array.from({ length: job.batchSize }, (_, n) => ({ type: 'echo', payload: { n } })) });
  const measured = recorder();
  let remaining = Math.ceil(job.total / job.batchSize);
  let tasks = 0;
  const start = performance.now();
  await Promise.all(Array.from({ length: job.connections }, async () => {
    while (remaining > 0) {
      remaining -= 1;
      if (await measured.time(() => post(pool, job.key, '/api/v1/tasks/batch', body))) tasks += job.batchSize;
    }
  }));
  await pool.close();
  return measured.result(tasks, performance.now() - start);
}

/** Single submits at a fixed rate whatever the answers' pace (an open loop), so slow answers cannot hide queueing. */
async function open(job: Extract<LoadJob, { mode: 'open' }>): Promise<LoadResult> {
  const pool = new Pool(job.url, { connections: 256 });
  const measured = recorder();
  const inFlight = new Set<Promise<void>>();
  let sent = 0;
  let tasks = 0;
  const start = performance.now();
  const total = Math.round((job.ratePerSecond * job.durationMs) / 1000);
  while (sent < total) {
    const due = Math.min(total, Math.floor(((performance.now() - start) * job.ratePerSecond) / 1000) + 1);
    for (; sent < due; sent++) {
      const request = measured.time(() => post(pool, job.key, '/api/v1/tasks', ECHO)).then((ok) => {
        if (ok) tasks += 1;
        inFlight.delete(request);
      });
      inFlight.add(request);
    }
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  await Promise.all(inFlight);
  await pool.close();
  return measured.result(tasks, performance.now() - start);
}

const job = JSON.parse(process.argv[2] ?? '{}') as LoadJob;
const run = { closed, batches, open }[job.mode] as (job: LoadJob) => Promise<LoadResult>;
process.stdout.write(`${JSON.stringify(await run(job))}\n`);
