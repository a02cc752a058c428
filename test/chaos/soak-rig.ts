// The soak's machinery: a seeded random source, the journal of everything the run did, and the pool that keeps
// two worker processes alive while the soak kills them.
import { setTimeout as delay } from 'node:timers/promises';
import { matches, type ServiceProcess } from '../support/processes.ts';
import type { ChaosWorld } from './kit.ts';

/** mulberry32: small, fast, and the same sequence for the same seed everywhere. */
export class Rng {
  #state: number;
  constructor(seed: number) {
    this.#state = seed >>> 0;
  }
  next(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  }
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }
  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)] as T;
  }
}

export type Plan = { index: number; key: string; body: { type: string; payload: unknown; priority: number; maxAttempts: number; backoff: unknown } };

export type Window = { kind: string; from: number; to: number };
export type Kill = { workerId: string; at: number };
/** `attempts`: the task's attempts when the cancel was accepted (the answer carries the task). */
export type Cancel = { id: string; status: number | 'error'; attempts: number | null };

/** Everything the run did, for the final accounting. */
export class Journal {
  readonly accepted = new Map<string, Plan>();
  /** Idempotency key → the answer of the try that was stored anyway. */
  readonly replayed = new Map<string, string>();
  readonly refusedSubmits = { count: 0 };
  readonly unexpected: string[] = [];
  readonly windows: Window[] = [];
  readonly kills: Kill[] = [];
  readonly crashes: { workerId: string; at: number; code: number | null; tail: string }[] = [];
  readonly cancels: Cancel[] = [];
  faults(): Record<string, number> {
    const counts: Record<string, number> = {};
    for (const w of this.windows) counts[w.kind] = (counts[w.kind] ?? 0) + 1;
    counts['worker-kill'] = this.kills.length;
    counts['cancel'] = this.cancels.length;
    return counts;
  }
}

/** Keeps two workers running: replaces the ones we kill, and restarts those that die by themselves. */
export class WorkerPool {
  readonly all: ServiceProcess[] = [];
  readonly #slots: (ServiceProcess | null)[] = [null, null];
  readonly #world: ChaosWorld;
  readonly #journal: Journal;
  readonly #killed = new Set<ServiceProcess>();
  #generation = 0;
  #stopped = false;

  constructor(world: ChaosWorld, journal: Journal) {
    this.#world = world;
    this.#journal = journal;
  }

  spawn(slot: number): void {
    if (this.#stopped) return;
    const workerId = `w${slot}-${++this.#generation}`;
    const worker = this.#world.spawnWorker(workerId);
    this.all.push(worker);
    this.#slots[slot] = worker;
    worker.child.once('close', (code) => {
      if (this.#killed.has(worker) || this.#stopped) return;
      // A worker cannot start while PostgreSQL is unreachable (it migrates first): it exits, and is restarted.
      this.#journal.crashes.push({ workerId, at: Date.now(), code, tail: worker.tail(5) });
      setTimeout(() => this.spawn(slot), 300).unref();
    });
  }

  async kill(slot: number): Promise<void> {
    const worker = this.#slots[slot];
    if (!worker?.alive) return;
    this.#killed.add(worker);
    this.#journal.kills.push({ workerId: String(worker.name.split(' ')[1]), at: Date.now() });
    await worker.stop('SIGKILL', 5_000);
    this.spawn(slot);
  }

  /** Resolves once both current workers consume the queue. */
  async ready(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (const slot of [0, 1]) {
      for (;;) {
        const worker = this.#slots[slot];
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`worker slot ${slot} not consuming after ${timeoutMs} ms`);
        const ok = await worker?.waitForLine(matches('consuming'), Math.min(left, 5_000), 'consuming').then(() => true, () => false);
        if (ok && worker?.alive) break;
        // The slot's worker died starting up; its replacement comes in a moment.
        await delay(100);
      }
    }
  }

  stop(): void {
    this.#stopped = true;
  }
}
