/**
 * Counts the handlers a worker may run at once. A slot is taken before the claim and given back when the handler
 * returns, not when its outcome is recorded: the recording is a shared statement that waits its turn, and holding
 * a slot through it would idle the slot. Messages are acked once their claim commits, so RabbitMQ's prefetch no
 * longer bounds running work: this does.
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
