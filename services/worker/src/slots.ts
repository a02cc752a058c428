/**
 * Counts the attempts a worker may run at once. Messages are acked once their claim commits, so RabbitMQ's
 * prefetch no longer bounds running work: this does.
 */
export class Slots {
  #free: number;
  readonly #waiting: ((granted: boolean) => void)[] = [];
  #closed = false;

  constructor(size: number) {
    this.#free = size;
  }

  /** Resolves `true` with a slot held, or `false` when the slots closed first. */
  acquire(): Promise<boolean> {
    if (this.#closed) return Promise.resolve(false);
    if (this.#free > 0) {
      this.#free -= 1;
      return Promise.resolve(true);
    }
    return new Promise((resolve) => this.#waiting.push(resolve));
  }

  release(): void {
    const next = this.#waiting.shift();
    if (next) next(true);
    else this.#free += 1;
  }

  /** Refuses every waiting and future acquire. */
  close(): void {
    this.#closed = true;
    for (const waiter of this.#waiting.splice(0)) waiter(false);
  }
}
