// One benchmark's Conveyor: a fresh database and queue, the API and workers as real processes (as `npm run api`
// and `npm run worker` start them), and what they cost in memory and CPU while the benchmark runs.
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { openSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { newApiKey } from '../services/core/src/auth/api-key.ts';
import { controlExchange } from '../services/core/src/queue/control.ts';
import { deleteExchanges, deleteQueues, dropDatabase, freePort } from '../test/support/isolation.ts';
import { SERVICE_NODE_FLAGS } from '../scripts/node-flags.ts';

const root = join(import.meta.dirname, '..');
const PAGE_BYTES = 4096;
const TICKS_PER_SECOND = 100;

export type SystemOptions = {
  databaseUrl: string;
  amqpUrl: string;
  workers: number;
  workerConcurrency: number;
  logDir: string;
  /** Run the compiled build in dist/ (as the images do) rather than the TypeScript sources. */
  compiled: boolean;
  /** Extra environment for every service. */
  env: Record<string, string>;
};

/** Peak memory and CPU time of one process over a measurement window. */
export type ProcessCost = { name: string; peakRssMb: number; cpuSeconds: number; eventLoopP99Ms: number | null };

type Service = { name: string; child: ChildProcess; metricsUrl: string };
type WorkerSettings = { env: NodeJS.ProcessEnv; count: number; concurrency: number; logDir: string; compiled: boolean };

/** The entry point of a service: its compiled form in dist/, or its TypeScript source. */
const entry = (service: 'api' | 'worker', compiled: boolean) =>
  compiled ? `dist/services/${service}/src/main.js` : `services/${service}/src/main.ts`;

/** utime + stime of a process, in seconds, and its resident memory in MB; null once it is gone. */
function usage(pid: number): { cpu: number; rssMb: number } | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const cpu = (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
    const rssPages = Number(readFileSync(`/proc/${pid}/statm`, 'utf8').split(' ')[1]);
    return { cpu, rssMb: (rssPages * PAGE_BYTES) / 1_048_576 };
  } catch {
    return null;
  }
}

/** CPU seconds used so far by every process whose command is `comm` (PostgreSQL backends, RabbitMQ's VM). */
export function cpuOf(comm: string): number {
  let total = 0;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/comm`, 'utf8').trim() !== comm) continue;
      total += usage(Number(entry))?.cpu ?? 0;
    } catch {
      // The process ended while we looked.
    }
  }
  return total;
}

async function eventLoopP99(metricsUrl: string, key: string): Promise<number | null> {
  try {
    const text = await (await fetch(metricsUrl, { headers: { authorization: `Bearer ${key}` } })).text();
    const match = /^conveyor_nodejs_eventloop_lag_p99_seconds\S* ([\d.e+-]+)$/m.exec(text);
    return match ? Math.round(Number(match[1]) * 100_000) / 100 : null;
  } catch {
    return null;
  }
}

export class BenchSystem {
  readonly apiUrl: string;
  readonly key: string;
  readonly db: pg.Client;
  readonly databaseUrl: string;
  readonly queue: string;
  readonly #services: Service[] = [];
  #workers: WorkerSettings | null = null;
  #window: { start: Map<string, number>; peak: Map<string, number>; timer: NodeJS.Timeout } | null = null;

  private constructor(fields: { apiUrl: string; key: string; db: pg.Client; databaseUrl: string; queue: string }) {
    this.apiUrl = fields.apiUrl;
    this.key = fields.key;
    this.db = fields.db;
    this.databaseUrl = fields.databaseUrl;
    this.queue = fields.queue;
  }

  /** Starts the API on a fresh database and queue; workers come later ({@link startWorkers}) so a benchmark can fill the queue first. */
  static async start(options: SystemOptions): Promise<BenchSystem> {
    const suffix = randomBytes(4).toString('hex');
    const url = new URL(options.databaseUrl);
    url.pathname = `/conveyor_bench_${suffix}`;
    const key = newApiKey();
    const port = await freePort();
    const env = {
      ...process.env,
      DATABASE_URL: url.toString(),
      AMQP_URL: options.amqpUrl,
      TASKS_QUEUE: `bench-${suffix}`,
      HOST: '127.0.0.1',
      PORT: String(port),
      AUTH_MODE: 'apikey',
      AUTH_BOOTSTRAP_KEY: key,
      // The load comes from one key far faster than any client's fair share.
      RATE_LIMIT_PER_SECOND: '0',
      ...options.env,
    };
    const apiUrl = `http://127.0.0.1:${port}`;
    const system = new BenchSystem({ apiUrl, key, db: new pg.Client({ connectionString: url.toString() }), databaseUrl: url.toString(), queue: env.TASKS_QUEUE });
    system.#spawn('api', entry('api', options.compiled), env, options.logDir, `${apiUrl}/metrics`);
    try {
      await system.#ready(`${apiUrl}/readyz`);
      await system.db.connect();
    } catch (error) {
      // An API that never became ready must not outlive the bench, nor its database and queue.
      await system.stop();
      throw error;
    }
    system.#workers = { env, count: options.workers, concurrency: options.workerConcurrency, logDir: options.logDir, compiled: options.compiled };
    return system;
  }

  async startWorkers(): Promise<void> {
    const settings = this.#workers;
    if (!settings) throw new Error('the API is not started');
    await Promise.all(Array.from({ length: settings.count }, async (_, i) => {
      const metricsPort = await freePort();
      const env = { ...settings.env, WORKER_ID: `bench-worker-${i}`, WORKER_CONCURRENCY: String(settings.concurrency), METRICS_PORT: String(metricsPort) };
      this.#spawn(`worker-${i}`, entry('worker', settings.compiled), env, settings.logDir, `http://127.0.0.1:${metricsPort}/metrics`);
      await this.#ready(`http://127.0.0.1:${metricsPort}/readyz`);
    }));
  }

  #spawn(name: string, file: string, env: NodeJS.ProcessEnv, logDir: string, metricsUrl: string): void {
    const log = openSync(join(logDir, `${name}.log`), 'a');
    const child = spawn(process.execPath, [...SERVICE_NODE_FLAGS, join(root, file)], { cwd: root, env, stdio: ['ignore', log, log] });
    this.#services.push({ name, child, metricsUrl });
  }

  async #ready(url: string): Promise<void> {
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      const ok = await fetch(url).then((r) => r.ok, () => false);
      if (ok) return;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    throw new Error(`${url} did not become ready within 60 s`);
  }

  /** Starts measuring: CPU from now, peak memory sampled every `sampleMs`, event-loop delay histograms reset. */
  async beginWindow(sampleMs = 250): Promise<void> {
    await Promise.all(this.#services.map((s) => eventLoopP99(s.metricsUrl, this.key)));
    const start = new Map<string, number>();
    const peak = new Map<string, number>();
    const sample = () => {
      for (const s of this.#services) {
        const now = usage(s.child.pid ?? -1);
        if (now) peak.set(s.name, Math.max(peak.get(s.name) ?? 0, now.rssMb));
      }
    };
    for (const s of this.#services) start.set(s.name, usage(s.child.pid ?? -1)?.cpu ?? 0);
    sample();
    this.#window = { start, peak, timer: setInterval(sample, sampleMs) };
  }

  /** What each process cost since {@link beginWindow}. */
  async endWindow(): Promise<ProcessCost[]> {
    const window = this.#window;
    if (!window) throw new Error('no measurement window is open');
    clearInterval(window.timer);
    this.#window = null;
    return Promise.all(this.#services.map(async (s) => ({
      name: s.name,
      peakRssMb: Math.round(window.peak.get(s.name) ?? 0),
      cpuSeconds: Math.round(((usage(s.child.pid ?? -1)?.cpu ?? 0) - (window.start.get(s.name) ?? 0)) * 100) / 100,
      eventLoopP99Ms: await eventLoopP99(s.metricsUrl, this.key),
    })));
  }

  /** Resident memory of every service now, in MB. */
  rss(): Record<string, number> {
    return Object.fromEntries(this.#services.map((s) => [s.name, Math.round(usage(s.child.pid ?? -1)?.rssMb ?? 0)]));
  }

  /** Stops every service (SIGTERM, as a deployment would) and removes the database and queue. */
  async stop(): Promise<void> {
    await this.db.end().catch(() => undefined);
    await Promise.all(this.#services.map((s) => new Promise<void>((resolve) => {
      if (s.child.exitCode !== null || s.child.signalCode !== null) return resolve();
      s.child.once('exit', () => resolve());
      s.child.kill('SIGTERM');
      setTimeout(() => s.child.kill('SIGKILL'), 30_000).unref();
    })));
    await dropDatabase(this.databaseUrl);
    await deleteQueues([this.queue]);
    await deleteExchanges([controlExchange(this.queue)]);
  }
}
