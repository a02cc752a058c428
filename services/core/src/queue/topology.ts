import type { Channel } from 'amqplib';
import { z } from 'zod';

/** RabbitMQ priorities run 0..MAX; task priorities (0–9) fit inside. */
export const MAX_QUEUE_PRIORITY = 10;

/** Declares the durable classic priority queue tasks travel through. Idempotent. */
export async function assertTasksQueue(channel: Channel, queue: string): Promise<void> {
  await channel.assertQueue(queue, {
    durable: true,
    arguments: { 'x-queue-type': 'classic', 'x-max-priority': MAX_QUEUE_PRIORITY },
  });
}

/** What a task's message carries: enough to find the task; everything else lives in PostgreSQL. */
export const TaskMessageSchema = z.object({ taskId: z.uuid(), type: z.string() });
export type TaskMessage = z.infer<typeof TaskMessageSchema> & { priority: number };

export function encodeTaskMessage(message: TaskMessage): Buffer {
  return Buffer.from(JSON.stringify({ taskId: message.taskId, type: message.type }));
}

/** `null` for a message that is not a task message (it is dropped, not retried). */
export function decodeTaskMessage(content: Buffer, priority: number | undefined): TaskMessage | null {
  try {
    const parsed = TaskMessageSchema.safeParse(JSON.parse(content.toString('utf8')));
    return parsed.success ? { ...parsed.data, priority: priority ?? 0 } : null;
  } catch {
    return null;
  }
}
