// Runs services as real child processes (as `npm start`, `npm run api` and `npm run worker` do) and reads
// their JSON log lines, so that tests can wait for what a process says instead of sleeping.
import { type ChildProcess, spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export const ROOT = join(import.meta.dirname, '..', '..');

export const ENTRY_POINTS = Object.freeze({
  launcher: 'scripts/start.ts',
  api: 'services/api/src/main.ts',
  worker: 'services/worker/src/main.ts',
});

/** A pino line as the services write it: `msg`, `level`, `service`, plus whatever the call site added. */
export type LogLine = Record<string, unknown> & { msg?: string; service?: string; level?: string };

export type Exit = { code: number | null; signal: NodeJS.Signals | null };

type Waiter = { predicate: (line: LogLine) => boolean; resolve: (line: LogLine) => void };

const TAIL_LINES = 30;

/** One spawned process, with everything it wrote. Use {@link spawnService}, which also registers it for cleanup. */
export class ServiceProcess {
  readonly name: string;
  readonly child: ChildProcess;
  /** Parsed JSON lines from stdout, in arrival order (children of a launcher write to the same pipe). */
  readonly lines: LogLine[] = [];
  /** Every line from stdout and stderr, parsed or not, for assertions on plain-text output and for diagnostics. */
  readonly output: string[] = [];
  readonly #waiters = new Set<Waiter>();
  readonly #closed: Promise<Exit>;
  #exit: Exit | null = null;
  #descendants = new Set<number>();

  constructor(name: string, child: ChildProcess) {
    this.name = name;
    this.child = child;
    this.#readLines(child.stdout, true);
    this.#readLines(child.stderr, false);
    // 'close' comes after the stdio pipes end: for a launcher that is after its children, which share them, are gone too.
    this.#closed = new Promise((resolve) => {
      child.once('close', (code, signal) => {
        this.#exit = { code, signal };
        resolve(this.#exit);
      });
      child.once('error', (error) => {
        this.output.push(`[spawn error] ${error.message}`);
        this.#exit = { code: null, signal: null };
        resolve(this.#exit);
      });
    });
  }

  get pid(): number {
    if (this.child.pid === undefined) throw new Error(`${this.name} has no pid: it did not spawn`);
    return this.child.pid;
  }

  /** True until the process has exited and its output has been read to the end. */
  get alive(): boolean {
    return this.#exit === null;
  }

  #readLines(stream: NodeJS.ReadableStream | null, json: boolean): void {
    if (!stream) return;
    let pending = '';
    stream.setEncoding('utf8');
    const take = (text: string) => {
      this.output.push(text);
      if (!json || !text.startsWith('{')) return;
      try {
        this.#receive(JSON.parse(text) as LogLine);
      } catch {
        // A line that only looks like JSON stays in `output`.
      }
    };
    stream.on('data', (chunk: string) => {
      pending += chunk;
      const parts = pending.split('\n');
      pending = parts.pop() ?? '';
      for (const part of parts) take(part);
    });
    stream.on('end', () => {
      if (pending) take(pending);
      pending = '';
    });
  }

  #receive(line: LogLine): void {
    this.lines.push(line);
    for (const waiter of this.#waiters) {
      if (waiter.predicate(line)) {
        this.#waiters.delete(waiter);
        waiter.resolve(line);
      }
    }
  }

  /** The log lines matching `predicate`, so far. */
  find(predicate: (line: LogLine) => boolean): LogLine[] {
    return this.lines.filter(predicate);
  }

  /**
   * Resolves with the first log line (already received or still to come) matching `predicate`.
   * @throws when the process ends without writing one, or after `timeoutMs`; the message quotes its last output.
   */
  waitForLine(predicate: (line: LogLine) => boolean, timeoutMs: number, what = 'a log line'): Promise<LogLine> {
    const seen = this.lines.find(predicate);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        predicate,
        resolve: (line) => {
          clearTimeout(timer);
          resolve(line);
        },
      };
      const fail = (why: string) => {
        this.#waiters.delete(waiter);
        clearTimeout(timer);
        reject(new Error(`${this.name}: ${why} waiting for ${what}\n${this.tail()}`));
      };
      const timer = setTimeout(() => fail(`timed out after ${timeoutMs} ms`), timeoutMs);
      this.#waiters.add(waiter);
      void this.#closed.then((exit) => {
        if (this.#waiters.has(waiter)) fail(`process ended (code ${exit.code}, signal ${exit.signal})`);
      });
    });
  }

  /** Waits for a line whose `msg` is `msg` and which has every field of `fields`. */
  waitForMessage(msg: string, fields: Record<string, unknown> = {}, timeoutMs = 15_000): Promise<LogLine> {
    return this.waitForLine(matches(msg, fields), timeoutMs, `'${msg}' ${JSON.stringify(fields)}`);
  }

  /**
   * Resolves once the process has exited and its output is read.
   * @throws after `timeoutMs`, quoting its last output.
   */
  waitForExit(timeoutMs: number): Promise<Exit> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${this.name}: still running after ${timeoutMs} ms\n${this.tail()}`)), timeoutMs);
    });
    return Promise.race([this.#closed, timeout]).finally(() => clearTimeout(timer));
  }

  signal(signal: NodeJS.Signals): void {
    if (!this.child.kill(signal)) throw new Error(`${this.name}: could not send ${signal}`);
  }

  /** Sends `signal` and waits for the exit. */
  async stop(signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 15_000): Promise<Exit> {
    this.signal(signal);
    return this.waitForExit(timeoutMs);
  }

  /**
   * Records the processes this one started (a launcher's services), so that cleanup can kill them even though they
   * run in their own process groups, and returns their pids.
   */
  adoptDescendants(): number[] {
    for (const pid of descendantsOf(this.pid)) this.#descendants.add(pid);
    return [...this.#descendants];
  }

  /** SIGKILLs this process and every descendant still running. */
  async kill(timeoutMs = 5_000): Promise<void> {
    const adopted = [...this.#descendants].filter(runsOurCode);
    const pids = this.alive ? [this.pid, ...descendantsOf(this.pid), ...adopted] : adopted;
    for (const pid of new Set(pids)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
    if (this.alive) await this.waitForExit(timeoutMs).catch(() => undefined);
  }

  tail(lines = TAIL_LINES): string {
    return this.output.slice(-lines).map((line) => `  | ${line}`).join('\n');
  }
}

/** A predicate for lines with this `msg` and these field values. */
export function matches(msg: string, fields: Record<string, unknown> = {}): (line: LogLine) => boolean {
  return (line) => line.msg === msg && Object.entries(fields).every(([key, value]) => line[key] === value);
}

/** True while `pid` names a process that has not been reaped. */
export function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Guards against killing an unrelated process that reused the pid of one of ours after it exited. */
function runsOurCode(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(ROOT);
  } catch {
    return false;
  }
}

function parentOf(pid: string): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses; the parent pid is the second field after it.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[1]);
  } catch {
    return null;
  }
}

/** Every process below `pid`, read from /proc (Linux). */
export function descendantsOf(pid: number): number[] {
  let entries: string[];
  try {
    entries = readdirSync('/proc').filter((entry) => /^\d+$/.test(entry));
  } catch {
    return [];
  }
  const children = new Map<number, number[]>();
  for (const entry of entries) {
    const parent = parentOf(entry);
    if (parent === null) continue;
    children.set(parent, [...(children.get(parent) ?? []), Number(entry)]);
  }
  const found: number[] = [];
  const queue = [pid];
  for (let next = queue.shift(); next !== undefined; next = queue.shift()) {
    for (const child of children.get(next) ?? []) {
      found.push(child);
      queue.push(child);
    }
  }
  return found;
}

const started = new Set<ServiceProcess>();

/**
 * Starts `file` (relative to the project root) with this Node, in the project root, with only `env`
 * (plus PATH and HOME) as its environment, so that the caller's shell settings cannot leak in.
 */
export function spawnService(name: string, file: string, env: Record<string, string>): ServiceProcess {
  const child = spawn(process.execPath, [join(ROOT, file)], {
    cwd: ROOT,
    env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: process.env['HOME'] ?? '/tmp', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const service = new ServiceProcess(name, child);
  started.add(service);
  return service;
}

/** SIGKILLs every process spawned here that is still running (for `suite.after`, whatever the tests left behind). */
export async function killAll(): Promise<void> {
  await Promise.all([...started].map((service) => service.kill()));
  started.clear();
}

export type ScriptRun = { code: number | null; stdout: string; stderr: string };

/**
 * Runs `file` (a command-line script, relative to the project root) with `args` to its end, with only `env`
 * (plus PATH and HOME) as its environment, and answers with its exit code and output. A script still running
 * after `timeoutMs` is killed and the call rejects with what it printed.
 */
export function runScript(file: string, args: readonly string[], env: Record<string, string>, timeoutMs: number): Promise<ScriptRun> {
  const child = spawn(process.execPath, [join(ROOT, file), ...args], {
    cwd: ROOT,
    env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: process.env['HOME'] ?? '/tmp', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${file} ${args.join(' ')}: still running after ${timeoutMs} ms\n${stdout}${stderr}`));
    }, timeoutMs);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
