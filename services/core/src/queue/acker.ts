import type { Channel, Message } from 'amqplib';

/**
 * Acks one channel's deliveries in bulk. Acks asked for in one turn of the event loop go out together: the
 * longest run of them at the front of the unsettled deliveries as one `multiple` ack, the rest one by one (so
 * that a delivery still being worked on never holds the others' acks, and the prefetch window, back).
 */
export class Acker {
  readonly #channel: Channel;
  /** Delivery tags handed out and not yet settled, in delivery order (tags only grow on a channel). */
  readonly #unsettled = new Set<number>();
  readonly #toAck = new Set<number>();
  #scheduled = false;

  constructor(channel: Channel) {
    this.#channel = channel;
  }

  delivered(tag: number): void {
    this.#unsettled.add(tag);
  }

  ack(tag: number): void {
    this.#toAck.add(tag);
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(() => this.flush());
  }

  /** Returns the delivery to the queue, at once. */
  requeue(message: Message): void {
    this.#unsettled.delete(message.fields.deliveryTag);
    this.#channel.nack(message, false, true);
  }

  /** Sends the acks asked for so far (before the channel is closed, so that none is lost). */
  flush(): void {
    this.#scheduled = false;
    try {
      this.#send();
    } catch {
      // The channel closed in the meantime; RabbitMQ requeued what it had not been told about.
      this.#unsettled.clear();
      this.#toAck.clear();
    }
  }

  #send(): void {
    let upTo = 0;
    for (const tag of this.#unsettled) {
      if (!this.#toAck.has(tag)) break;
      upTo = tag;
      this.#unsettled.delete(tag);
      this.#toAck.delete(tag);
    }
    if (upTo > 0) this.#channel.ack({ fields: { deliveryTag: upTo } } as Message, true);
    for (const tag of this.#toAck) {
      this.#unsettled.delete(tag);
      this.#channel.ack({ fields: { deliveryTag: tag } } as Message);
    }
    this.#toAck.clear();
  }
}
