import type { Logger } from './log.ts';

/**
 * Runs `run` every `intervalMs`, never twice at once. `nudge()` runs it as soon as the current run ends;
 * `run` returning `true` asks for another run at once (more work is waiting). Errors are logged, once per
 * streak, and the schedule goes on. `stop()` waits for a run in flight.
 */
export class Periodic {
  readonly #name: string;
  readonly #intervalMs: number;
  readonly #run: () => Promise<boolean | void>;
  readonly #log: Logger;
  #timer: NodeJS.Timeout | null = null;
  #running: Promise<void> | null = null;
  #again = false;
  #failing = false;
  #stopped = true;

  constructor(name: string, intervalMs: number, run: () => Promise<boolean | void>, log: Logger) {
    this.#name = name;
    this.#intervalMs = intervalMs;
    this.#run = run;
    this.#log = log.child({ component: name });
  }

  start(): void {
    this.#stopped = false;
    this.#schedule(0);
  }

  /** Runs as soon as possible (after the run in flight, if any). */
  nudge(): void {
    if (this.#stopped) return;
    if (this.#running) this.#again = true;
    else this.#schedule(0);
  }

  #schedule(delayMs: number): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.#tick(), delayMs);
    this.#timer.unref();
  }

  #tick(): void {
    this.#timer = null;
    if (this.#stopped || this.#running) return;
    this.#running = (async () => {
      // Yield first, so that `#running` is set before a run that throws at once clears it.
      await null;
      let more = false;
      try {
        more = (await this.#run()) === true;
        if (this.#failing) this.#log.info(`${this.#name} recovered`);
        this.#failing = false;
      } catch (error) {
        if (!this.#failing) this.#log.warn({ err: (error as Error).message }, `${this.#name} failed; retrying on schedule`);
        this.#failing = true;
      }
      this.#running = null;
      const again = more || this.#again;
      this.#again = false;
      if (!this.#stopped) this.#schedule(again ? 0 : this.#intervalMs);
    })();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    await this.#running;
  }
}
