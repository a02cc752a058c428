import { BrokerUnavailable } from '../errors.ts';
import type { Broker } from './broker.ts';

/** Reads queue depths for processes that watch queues they do not publish to (the autoscaler). */
export class QueueInspector {
  readonly #broker: Broker;

  constructor(broker: Broker) {
    this.#broker = broker;
  }

  /**
   * Messages ready for delivery in `queue`; 0 when the queue does not exist.
   * @throws {BrokerUnavailable} while RabbitMQ is unreachable.
   */
  async readyMessages(queue: string): Promise<number> {
    const model = this.#broker.model();
    if (!model) throw new BrokerUnavailable();
    // A check of a missing queue closes its channel (404), so each check gets a channel of its own.
    const channel = await model.createChannel().catch((error: unknown) => {
      throw new BrokerUnavailable('could not open a channel', error);
    });
    channel.on('error', () => undefined);
    try {
      return (await channel.checkQueue(queue)).messageCount;
    } catch (error) {
      if ((error as { code?: number }).code === 404) return 0;
      throw new BrokerUnavailable('could not read the queue depth', error);
    } finally {
      await channel.close().catch(() => undefined);
    }
  }
}
