import { IllegalStateError } from './errors.ts';
import type { Logger } from './log.ts';

/** A long-lived part of a service. `stop()` must be safe to call once `start()` has been called, even if it failed. */
export type Component = Readonly<{
  name: string;
  start: () => Promise<void>;
  stop: () => Promise<void>;
}>;

type State = 'idle' | 'starting' | 'running' | 'stopping' | 'stopped';

/**
 * Starts components in order and stops them in reverse order. `stop()` is idempotent (it returns the stop
 * in flight), waits for a `start()` in flight, and runs every component's stop even when an earlier one fails.
 */
export class Lifecycle {
  readonly #log: Logger;
  readonly #components: Component[] = [];
  readonly #started: Component[] = [];
  #state: State = 'idle';
  #starting: Promise<void> | null = null;
  #stopping: Promise<void> | null = null;

  constructor(log: Logger) {
    this.#log = log;
  }

  get state(): State {
    return this.#state;
  }

  add(...components: Component[]): this {
    if (this.#state !== 'idle') throw new IllegalStateError(`cannot add components: lifecycle is ${this.#state}`);
    this.#components.push(...components);
    return this;
  }

  /** @throws the first component's start error, after stopping what had started. */
  start(): Promise<void> {
    if (this.#state !== 'idle') throw new IllegalStateError(`cannot start: lifecycle is ${this.#state}`);
    this.#state = 'starting';
    this.#starting = (async () => {
      for (const component of this.#components) {
        if (this.#stopping) return;
        this.#started.push(component);
        await component.start();
        this.#log.debug({ component: component.name }, 'started');
      }
      this.#state = 'running';
    })();
    this.#starting.catch(() => undefined);
    return this.#starting.catch(async (error) => {
      await this.stop();
      throw error;
    });
  }

  /** @throws {AggregateError} of every component that failed to stop. */
  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      this.#state = 'stopping';
      await this.#starting?.catch(() => undefined);
      const failures: unknown[] = [];
      for (const component of [...this.#started].reverse()) {
        try {
          await component.stop();
          this.#log.debug({ component: component.name }, 'stopped');
        } catch (error) {
          failures.push(error);
          this.#log.error({ component: component.name, err: error }, 'component failed to stop cleanly');
        }
      }
      this.#state = 'stopped';
      if (failures.length > 0) throw new AggregateError(failures, 'some components failed to stop cleanly');
    })();
    return this.#stopping;
  }
}

/**
 * Runs a service until SIGTERM or SIGINT: the first signal starts a graceful stop bounded by `deadlineMs`,
 * a second one (or the deadline) forces the process out. Exits 0 after a clean stop, 1 otherwise.
 */
export async function runUntilSignalled(lifecycle: Lifecycle, log: Logger, deadlineMs: number): Promise<void> {
  let signalled = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (signalled) {
      log.warn({ signal }, 'second signal, exiting now');
      process.exit(1);
    }
    signalled = true;
    log.info({ signal }, 'stopping');
    const force = setTimeout(() => {
      log.error({ deadlineMs }, 'graceful stop took too long, exiting');
      process.exit(1);
    }, deadlineMs);
    force.unref();
    lifecycle.stop().then(
      () => {
        log.info('stopped');
        process.exit(0);
      },
      () => process.exit(1),
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  try {
    await lifecycle.start();
  } catch (error) {
    log.fatal({ err: error }, 'failed to start');
    process.exit(1);
  }
}
