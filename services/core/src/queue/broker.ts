import { type ChannelModel, connect, type RecoveringChannelModel } from 'amqplib';
import { IllegalStateError } from '../errors.ts';
import { type Logger, redactUrl } from '../log.ts';
import type { Metrics } from '../metrics.ts';

/** Called after every (re)connect, in registration order; a throw fails the connect and it is retried. */
export type ConnectHook = (model: ChannelModel) => Promise<void>;

export type BrokerOptions = {
  url: string;
  /** Shown in RabbitMQ's management UI, e.g. `conveyor-api`. */
  connectionName: string;
  /** Seconds between heartbeats; a silent broker is declared dead after two missed ones. */
  heartbeatSeconds?: number;
  reconnect?: { initialDelayMs: number; maxDelayMs: number };
  metrics?: Metrics | undefined;
};

/**
 * One RabbitMQ connection that reconnects by itself (capped exponential backoff with jitter) and re-runs
 * every component's hook after each connect. An outage is logged once when it starts and once when it ends.
 */
export class Broker {
  readonly #options: BrokerOptions;
  readonly #log: Logger;
  readonly #hooks: ConnectHook[] = [];
  #connection: RecoveringChannelModel | null = null;
  #model: ChannelModel | null = null;
  #down = false;
  #closed = false;

  constructor(options: BrokerOptions, log: Logger) {
    this.#options = options;
    this.#log = log.child({ component: 'broker' });
  }

  get connected(): boolean {
    return this.#model !== null;
  }

  /** The live connection, for components that open short-lived channels; `null` while disconnected. */
  model(): ChannelModel | null {
    return this.#model;
  }

  /** Registers a hook; it also runs at once when the broker is already connected. */
  async onConnect(hook: ConnectHook): Promise<void> {
    this.#hooks.push(hook);
    if (this.#model) await hook(this.#model).catch((error) => this.reconnect(error));
  }

  /** Starts connecting in the background; does not wait for RabbitMQ to answer. */
  async start(): Promise<void> {
    if (this.#closed) throw new IllegalStateError('broker connection already closed');
    if (this.#connection) return;
    const { initialDelayMs = 200, maxDelayMs = 10_000 } = this.#options.reconnect ?? {};
    const url = new URL(this.#options.url);
    if (!url.searchParams.has('heartbeat')) url.searchParams.set('heartbeat', String(this.#options.heartbeatSeconds ?? 10));
    // With waitForConnect: false this resolves at once; the first attempt starts on the next tick,
    // after the listeners below are attached.
    const connection = await connect(url.toString(), {
      timeout: 5_000,
      noDelay: true,
      clientProperties: { connection_name: this.#options.connectionName },
      recovery: {
        initialDelay: initialDelayMs,
        maxDelay: maxDelayMs,
        factor: 2,
        jitter: 0.2,
        maxRetries: Infinity,
        waitForConnect: false,
        setup: async (model: ChannelModel) => {
          // Indexing the live array runs hooks registered while earlier ones ran; setting the model with no
          // await after the last check leaves no moment in which a new hook would be neither run here nor by onConnect.
          for (let i = 0; i < this.#hooks.length; i++) await this.#hooks[i]?.(model);
          this.#model = model;
          this.#options.metrics?.brokerConnected.set(1);
        },
      },
    });
    this.#connection = connection;
    const target = redactUrl(this.#options.url);
    connection.on('connect', () => {
      this.#log.info({ broker: target }, this.#down ? 'RabbitMQ connection restored' : 'connected to RabbitMQ');
      this.#down = false;
    });
    connection.on('disconnect', (error: Error) => this.#markDown('RabbitMQ connection lost', error));
    connection.on('connect-failed', (error: Error) => this.#markDown('RabbitMQ not responding', error));
    // Connection errors are always followed by 'disconnect', which is where they are reported.
    connection.on('error', () => undefined);
    connection.on('blocked', (reason: string) => this.#log.warn({ reason }, 'RabbitMQ blocked publishing'));
    connection.on('unblocked', () => this.#log.info('RabbitMQ unblocked publishing'));
  }

  #markDown(message: string, error: Error): void {
    this.#model = null;
    this.#options.metrics?.brokerConnected.set(0);
    if (this.#down || this.#closed) return;
    this.#down = true;
    this.#log.warn({ broker: redactUrl(this.#options.url), err: error.message }, message);
  }

  /** Drops the current connection so that recovery builds everything again (used when a channel dies under us). */
  async reconnect(reason: unknown): Promise<void> {
    const model = this.#model;
    if (!model || this.#closed) return;
    // amqplib closes every channel just before the connection itself: wait a tick, and say nothing if it was
    // the connection going (its own 'disconnect' reports the outage, once).
    await new Promise((resolve) => setImmediate(resolve));
    if (this.#model !== model || this.#closed) return;
    this.#log.warn({ err: reason instanceof Error ? reason.message : String(reason) }, 'RabbitMQ channel lost, reconnecting');
    await model.close().catch(() => undefined);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#model = null;
    await this.#connection?.close().catch(() => undefined);
  }
}
