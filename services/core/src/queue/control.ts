import type { Channel, ChannelModel } from 'amqplib';
import { z } from 'zod';
import type { Logger } from '../log.ts';
import type { Broker } from './broker.ts';

const ControlMessageSchema = z.object({ action: z.literal('cancel'), taskId: z.uuid() });
export type ControlMessage = z.infer<typeof ControlMessageSchema>;

/** The fanout exchange every worker of a tasks queue listens on. */
export const controlExchange = (queue: string) => `${queue}.control`;

/**
 * Broadcasts to, and listens on, the control exchange: a cancel reaches every worker at once. Delivery is
 * best effort (a worker that is reconnecting misses it); the lease heartbeat, which reads the cancel flag
 * from PostgreSQL, is the backstop.
 */
export class ControlChannel {
  readonly #broker: Broker;
  readonly #exchange: string;
  readonly #onMessage: ((message: ControlMessage) => void) | null;
  readonly #log: Logger;
  #channel: Channel | null = null;
  #stopped = false;

  constructor(options: { broker: Broker; queue: string; onMessage?: (message: ControlMessage) => void }, log: Logger) {
    this.#broker = options.broker;
    this.#exchange = controlExchange(options.queue);
    this.#onMessage = options.onMessage ?? null;
    this.#log = log.child({ component: 'control' });
  }

  async start(): Promise<void> {
    await this.#broker.onConnect((model) => this.#open(model));
  }

  async #open(model: ChannelModel): Promise<void> {
    if (this.#stopped) return;
    const channel = await model.createChannel();
    channel.on('error', () => undefined);
    channel.on('close', () => {
      if (this.#channel === channel) this.#channel = null;
    });
    await channel.assertExchange(this.#exchange, 'fanout', { durable: true });
    if (this.#onMessage) {
      const onMessage = this.#onMessage;
      // A private queue per listener: it lives as long as this connection, and sees every broadcast.
      const { queue } = await channel.assertQueue('', { exclusive: true, autoDelete: true });
      await channel.bindQueue(queue, this.#exchange, '');
      await channel.consume(
        queue,
        (raw) => {
          if (!raw) return;
          const parsed = ControlMessageSchema.safeParse(safeJson(raw.content));
          if (parsed.success) onMessage(parsed.data);
          else this.#log.warn('ignored a malformed control message');
        },
        { noAck: true },
      );
    }
    this.#channel = channel;
  }

  /** Tells every worker to stop `taskId`; `false` when RabbitMQ is unreachable (the heartbeat will tell them). */
  broadcastCancel(taskId: string): boolean {
    const channel = this.#channel;
    if (!channel) return false;
    try {
      return channel.publish(this.#exchange, '', Buffer.from(JSON.stringify({ action: 'cancel', taskId })));
    } catch {
      return false;
    }
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    const channel = this.#channel;
    this.#channel = null;
    await channel?.close().catch(() => undefined);
  }
}

function safeJson(content: Buffer): unknown {
  try {
    return JSON.parse(content.toString('utf8'));
  } catch {
    return null;
  }
}
