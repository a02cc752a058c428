import { setTimeout as delay } from 'node:timers/promises';
import type { ChannelModel, ConfirmChannel } from 'amqplib';
import { BrokerUnavailable } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import type { Broker } from './broker.ts';
import { assertTasksQueue, encodeTaskMessage, type TaskMessage } from './topology.ts';

/**
 * Publishes task messages on a confirm channel. Many publishes are in flight at once on the one channel
 * (pipelined), each resolving when RabbitMQ confirms it has the message on disk.
 */
export class Publisher {
  readonly #broker: Broker;
  readonly #queue: string;
  readonly #timeoutMs: number;
  readonly #log: Logger;
  #channel: ConfirmChannel | null = null;
  #stopped = false;
  /** Ids of messages RabbitMQ returned as unroutable; their confirm follows the return. */
  readonly #returned = new Set<string>();

  readonly #metrics: Metrics | undefined;

  constructor(options: { broker: Broker; queue: string; confirmTimeoutMs: number; metrics?: Metrics | undefined }, log: Logger) {
    this.#metrics = options.metrics;
    this.#broker = options.broker;
    this.#queue = options.queue;
    this.#timeoutMs = options.confirmTimeoutMs;
    this.#log = log.child({ component: 'publisher' });
  }

  /** Opens the confirm channel on every (re)connect. */
  async start(): Promise<void> {
    await this.#broker.onConnect((model) => this.#open(model));
  }

  async #open(model: ChannelModel): Promise<void> {
    if (this.#stopped) return;
    const channel = await model.createConfirmChannel();
    await assertTasksQueue(channel, this.#queue);
    channel.on('error', () => undefined);
    channel.on('return', (message: { properties: { messageId?: string } }) => {
      if (message.properties.messageId) this.#returned.add(message.properties.messageId);
    });
    channel.on('close', () => {
      if (this.#channel !== channel) return;
      this.#channel = null;
      void this.#broker.reconnect(new Error('publisher channel closed'));
    });
    this.#channel = channel;
  }

  get ready(): boolean {
    return this.#channel !== null;
  }

  /**
   * Resolves once RabbitMQ confirms the message.
   * @throws {BrokerUnavailable} when disconnected, when the broker refuses the message, or when no confirm comes in time.
   */
  publish(message: TaskMessage): Promise<void> {
    const channel = this.#channel;
    const fail = (reason: string, error: BrokerUnavailable) => {
      this.#metrics?.publishFailures.inc({ reason });
      return error;
    };
    if (!channel || this.#stopped) return Promise.reject(fail('disconnected', new BrokerUnavailable()));
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(fail('timeout', new BrokerUnavailable(`RabbitMQ did not confirm within ${this.#timeoutMs} ms`))),
        this.#timeoutMs,
      );
      const settle = (error: unknown) => {
        clearTimeout(timer);
        if (error) reject(fail('refused', new BrokerUnavailable('RabbitMQ did not accept the message', error)));
        else if (this.#returned.delete(message.taskId)) {
          // The queue vanished (deleted under us): declare it again and report the message as not sent.
          void assertTasksQueue(channel, this.#queue).catch(() => undefined);
          reject(fail('unroutable', new BrokerUnavailable(`queue ${this.#queue} did not exist; the message was not stored`)));
        } else {
          this.#metrics?.published.inc();
          resolve();
        }
      };
      try {
        channel.publish(
          '',
          this.#queue,
          encodeTaskMessage(message),
          {
            persistent: true,
            mandatory: true,
            priority: message.priority,
            messageId: message.taskId,
            type: message.type,
            contentType: 'application/json',
          },
          settle,
        );
      } catch (error) {
        settle(error);
      }
    });
  }

  /**
   * Messages ready for delivery in the tasks queue (not those delivered and not yet acked).
   * @throws {BrokerUnavailable} while disconnected.
   */
  async depth(): Promise<number> {
    const channel = this.#channel;
    if (!channel) throw new BrokerUnavailable();
    try {
      return (await channel.checkQueue(this.#queue)).messageCount;
    } catch (error) {
      throw new BrokerUnavailable('could not read the queue depth', error);
    }
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    const channel = this.#channel;
    this.#channel = null;
    if (!channel) return;
    // Waiting for outstanding confirms keeps a clean stop from leaving tasks `pending` needlessly; a broker
    // that stopped answering gets no longer than a confirm would.
    const timeout = new AbortController();
    await Promise.race([
      channel.waitForConfirms().catch(() => undefined),
      delay(this.#timeoutMs, undefined, { signal: timeout.signal }).catch(() => undefined),
    ]);
    timeout.abort();
    await channel.close().catch(() => undefined);
    this.#log.debug('publisher stopped');
  }
}
