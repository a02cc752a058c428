/** Gives a slot back; calls after the first do nothing. */
export type Release = () => void;

/**
 * Counts the handlers a worker may run at once. A slot is taken before the claim and given back when the handler
 * returns, not when its outcome is recorded: the recording is a shared statement that waits its turn, and holding
 * a slot through it would idle the slot. Messages are acked once their claim commits, so RabbitMQ's prefetch no
 * longer bounds running work: this does.
 */
export class Slots {
  #free: number;
  readonly #waiting: ((slot: Release | null) => void)[] = [];
  #closed = false;

  constructor(size: number) {
    this.#free = size;
  }

  /** Resolves with a held slot's {@link Release}, or `null` when the slots closed first. */
  acquire(): Promise<Release | null> {
    if (this.#closed) return Promise.resolve(null);
    if (this.#free > 0) {
      this.#free -= 1;
      return Promise.resolve(this.#held());
    }
    return new Promise((resolve) => this.#waiting.push(resolve));
  }

  #held(): Release {
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      const next = this.#waiting.shift();
      if (next) next(this.#held());
      else this.#free += 1;
    };
  }

  /** Refuses every waiting and future acquire. */
  close(): void {
    this.#closed = true;
    for (const waiter of this.#waiting.splice(0)) waiter(null);
  }
}
