import type { Logger } from '../../core/src/log.ts';

/** What a reconcile asks for next: nothing, or another pass after `ms` (polling what has no watch: PostgreSQL, RabbitMQ). */
export type ReconcileResult = { requeueAfterMs?: number } | void;

export type Reconcile = (key: string) => Promise<ReconcileResult>;

const INITIAL_BACKOFF_MS = 1_000;
const MAX_BACKOFF_MS = 30_000;

/**
 * A work queue of `namespace/name` keys: one reconcile at a time per key (a key enqueued while it runs runs
 * again afterwards, once), errors retried with backoff doubling from 1 s to 30 s, and nothing runs while paused
 * (a replica that is not the leader keeps its caches warm but does not act).
 */
export class ReconcileQueue {
  readonly #name: string;
  readonly #reconcile: Reconcile;
  readonly #log: Logger;
  readonly #onResult: (outcome: 'ok' | 'error', seconds: number) => void;
  readonly #dirty = new Set<string>();
  readonly #running = new Map<string, Promise<void>>();
  readonly #timers = new Map<string, NodeJS.Timeout>();
  readonly #failures = new Map<string, number>();
  #paused = true;
  #stopped = false;

  constructor(name: string, reconcile: Reconcile, log: Logger, onResult: (outcome: 'ok' | 'error', seconds: number) => void = () => undefined) {
    this.#name = name;
    this.#reconcile = reconcile;
    this.#log = log.child({ component: `reconcile-${name}` });
    this.#onResult = onResult;
  }

  enqueue(key: string): void {
    if (this.#stopped) return;
    this.#clearTimer(key);
    this.#dirty.add(key);
    this.#pump(key);
  }

  /** Enqueues `key` after `ms`, unless it is enqueued sooner. */
  enqueueAfter(key: string, ms: number): void {
    if (this.#stopped) return;
    this.#clearTimer(key);
    const timer = setTimeout(() => {
      this.#timers.delete(key);
      this.enqueue(key);
    }, ms);
    timer.unref();
    this.#timers.set(key, timer);
  }

  /** Starts acting on queued keys (on becoming leader). */
  resume(): void {
    this.#paused = false;
    for (const key of this.#dirty) this.#pump(key);
  }

  /** Stops starting reconciles; those in flight finish. */
  pause(): void {
    this.#paused = true;
  }

  #pump(key: string): void {
    if (this.#paused || this.#running.has(key) || !this.#dirty.has(key)) return;
    this.#dirty.delete(key);
    const run = this.#run(key).finally(() => {
      this.#running.delete(key);
      this.#pump(key);
    });
    this.#running.set(key, run);
  }

  async #run(key: string): Promise<void> {
    const started = performance.now();
    try {
      const result = await this.#reconcile(key);
      this.#failures.delete(key);
      this.#onResult('ok', (performance.now() - started) / 1000);
      if (result?.requeueAfterMs !== undefined && !this.#dirty.has(key)) this.enqueueAfter(key, result.requeueAfterMs);
    } catch (error) {
      const failures = (this.#failures.get(key) ?? 0) + 1;
      this.#failures.set(key, failures);
      const backoff = Math.min(MAX_BACKOFF_MS, INITIAL_BACKOFF_MS * 2 ** (failures - 1));
      this.#onResult('error', (performance.now() - started) / 1000);
      this.#log.warn({ key, err: (error as Error).message, retryInMs: backoff, failures }, `${this.#name} reconcile failed`);
      if (!this.#dirty.has(key)) this.enqueueAfter(key, backoff);
    }
  }

  #clearTimer(key: string): void {
    const timer = this.#timers.get(key);
    if (timer) clearTimeout(timer);
    this.#timers.delete(key);
  }

  /** Forgets a key (its object is gone). */
  forget(key: string): void {
    this.#clearTimer(key);
    this.#dirty.delete(key);
    this.#failures.delete(key);
  }

  /** Stops for good: no new reconciles, pending timers dropped, in-flight ones awaited. */
  async drain(): Promise<void> {
    this.#stopped = true;
    this.#paused = true;
    for (const timer of this.#timers.values()) clearTimeout(timer);
    this.#timers.clear();
    this.#dirty.clear();
    await Promise.allSettled([...this.#running.values()]);
  }
}
