import { DatabaseUnavailable } from './errors.ts';

type Waiting<I, O> = { item: I; resolve: (output: O) => void; reject: (error: unknown) => void };

export type CoalescerOptions<I> = {
  /** The most items one flush takes, counted by `sizeOf` (a lone item larger than this still goes alone). */
  maxBatch: number;
  /** How much of a batch an item takes (a list of rows counts its rows); 1 by default. */
  sizeOf?: (item: I) => number;
  /** How many flushes may run at once (each holds a database connection). */
  maxInFlight: number;
};

/**
 * Group commit: concurrent calls share one flush. A call waits only for the current turn of the event loop
 * to end (so calls made by requests handled in the same turn go together) or, when `maxInFlight` flushes are
 * already running, for one of them to finish; under load batches grow by themselves, and a lone call is sent
 * at once. `flush` answers in the order of its items. When a flush fails for a reason other than an
 * unreachable database, its items are retried one by one, so that one bad item fails alone.
 */
export class Coalescer<I, O> {
  readonly #flush: (items: I[]) => Promise<O[]>;
  readonly #options: CoalescerOptions<I>;
  #waiting: Waiting<I, O>[] = [];
  #inFlight = 0;
  #scheduled = false;

  constructor(flush: (items: I[]) => Promise<O[]>, options: CoalescerOptions<I>) {
    this.#flush = flush;
    this.#options = options;
  }

  run(item: I): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      this.#waiting.push({ item, resolve, reject });
      if (!this.#scheduled && this.#inFlight < this.#options.maxInFlight) {
        this.#scheduled = true;
        setImmediate(() => {
          this.#scheduled = false;
          this.#drain();
        });
      }
    });
  }

  #drain(): void {
    while (this.#waiting.length > 0 && this.#inFlight < this.#options.maxInFlight) {
      const batch = this.#waiting.splice(0, this.#batchLength());
      this.#inFlight += 1;
      void this.#send(batch).finally(() => {
        this.#inFlight -= 1;
        this.#drain();
      });
    }
  }

  /** How many of the waiting items make the next batch: as many as fit, and at least one. */
  #batchLength(): number {
    const sizeOf = this.#options.sizeOf ?? (() => 1);
    let size = 0;
    for (let n = 0; n < this.#waiting.length; n++) {
      size += sizeOf((this.#waiting[n] as Waiting<I, O>).item);
      if (size > this.#options.maxBatch) return Math.max(1, n);
    }
    return this.#waiting.length;
  }

  async #send(batch: Waiting<I, O>[]): Promise<void> {
    try {
      const outputs = await this.#flush(batch.map((w) => w.item));
      batch.forEach((w, i) => w.resolve(outputs[i] as O));
    } catch (error) {
      if (batch.length === 1 || error instanceof DatabaseUnavailable) {
        for (const w of batch) w.reject(error);
        return;
      }
      await Promise.all(batch.map((w) => this.#send([w])));
    }
  }
}
