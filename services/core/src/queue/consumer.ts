import type { Channel, ChannelModel, ConsumeMessage } from 'amqplib';
import type { Logger } from '../log.ts';
import { Acker } from './acker.ts';
import type { Broker } from './broker.ts';
import { assertTasksQueue, decodeTaskMessage, type TaskMessage } from './topology.ts';

/** One message taken from the queue. Settle it exactly once; settling after its channel died is a no-op. */
export type Delivery = Readonly<{
  message: TaskMessage;
  redelivered: boolean;
  ack: () => void;
  /** Returns the message to the queue. */
  requeue: () => void;
}>;

export type DeliveryHandler = (delivery: Delivery) => Promise<void>;

/**
 * Consumes the tasks queue with manual acks and a prefetch, re-subscribing after every reconnect.
 * The handler owns each delivery; messages that are not task messages are dropped here.
 */
export class Consumer {
  readonly #broker: Broker;
  readonly #queue: string;
  readonly #prefetch: number;
  readonly #handler: DeliveryHandler;
  readonly #log: Logger;
  #channel: Channel | null = null;
  #acker: Acker | null = null;
  #consumerTag: string | null = null;
  #stopped = false;

  constructor(options: { broker: Broker; queue: string; prefetch: number; handler: DeliveryHandler }, log: Logger) {
    this.#broker = options.broker;
    this.#queue = options.queue;
    this.#prefetch = options.prefetch;
    this.#handler = options.handler;
    this.#log = log.child({ component: 'consumer' });
  }

  async start(): Promise<void> {
    await this.#broker.onConnect((model) => this.#subscribe(model));
  }

  async #subscribe(model: ChannelModel): Promise<void> {
    if (this.#stopped) return;
    const channel = await model.createChannel();
    channel.on('error', () => undefined);
    channel.on('close', () => {
      if (this.#channel !== channel) return;
      this.#channel = null;
      this.#consumerTag = null;
      if (!this.#stopped) void this.#broker.reconnect(new Error('consumer channel closed'));
    });
    await assertTasksQueue(channel, this.#queue);
    await channel.prefetch(this.#prefetch);
    this.#channel = channel;
    const acker = new Acker(channel);
    this.#acker = acker;
    const { consumerTag } = await channel.consume(this.#queue, (raw) => this.#deliver(channel, acker, raw), { noAck: false });
    this.#consumerTag = consumerTag;
    this.#log.info({ queue: this.#queue, prefetch: this.#prefetch }, 'consuming');
  }

  #deliver(channel: Channel, acker: Acker, raw: ConsumeMessage | null): void {
    if (raw === null) {
      // RabbitMQ cancelled the consumer (queue deleted); subscribe again on a fresh connection.
      void this.#broker.reconnect(new Error('consumer cancelled by RabbitMQ'));
      return;
    }
    let settled = false;
    const settle = (action: () => void) => {
      // Settling twice would make RabbitMQ close the channel; a channel that closed took its deliveries
      // with it (RabbitMQ requeues them by itself).
      if (settled || this.#channel !== channel) return;
      settled = true;
      try {
        action();
      } catch (error) {
        this.#log.warn({ err: (error as Error).message }, 'could not settle delivery');
      }
    };
    acker.delivered(raw.fields.deliveryTag);
    const message = decodeTaskMessage(raw.content, raw.properties.priority);
    if (!message) {
      this.#log.warn({ messageId: raw.properties.messageId }, 'dropped a message that is not a task');
      settle(() => acker.ack(raw.fields.deliveryTag));
      return;
    }
    const delivery: Delivery = {
      message,
      redelivered: raw.fields.redelivered,
      ack: () => settle(() => acker.ack(raw.fields.deliveryTag)),
      requeue: () => settle(() => acker.requeue(raw)),
    };
    this.#handler(delivery).catch((error) => {
      this.#log.error({ err: error, taskId: message.taskId }, 'delivery handler failed');
      delivery.requeue();
    });
  }

  /** Stops taking new messages; deliveries already handed out can still be settled until {@link close}. */
  async stop(): Promise<void> {
    this.#stopped = true;
    const channel = this.#channel;
    const tag = this.#consumerTag;
    this.#consumerTag = null;
    if (channel && tag) await channel.cancel(tag).catch(() => undefined);
  }

  /** Closes the channel; RabbitMQ requeues whatever was not settled. */
  async close(): Promise<void> {
    this.#stopped = true;
    const channel = this.#channel;
    this.#channel = null;
    this.#acker?.flush();
    await channel?.close().catch(() => undefined);
  }
}
