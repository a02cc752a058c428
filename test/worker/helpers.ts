// What the worker suites share (each is an apiSuite): HTTP shorthands, and reads of what only PostgreSQL shows.
import amqplib from 'amqplib';
import pg from 'pg';
import * as assert from 'uvu/assert';
import { encodeTaskMessage, type TaskMessage } from '../../services/core/src/queue/topology.ts';
import type { Task } from '../../services/core/src/tasks/model.ts';
import { TaskStatus } from '../../services/core/src/tasks/state.ts';
import { eventually, getTask, settled, taskIn, request } from '../support/system.ts';

/**
 * Submits over HTTP. The returned status is not checked: with a worker running it may already be anything,
 * even `pending` again (a failed attempt waiting for its retry).
 */
export async function submit(baseUrl: string, body: Record<string, unknown>): Promise<Task> {
  const res = await request<Task>(baseUrl, 'POST', '/api/v1/tasks', body);
  assert.is(res.status, 201, res.text);
  return res.body;
}

/** Waits until every task in `ids` is completed. */
export function allCompleted(db: pg.Client, ids: readonly string[], timeoutMs = 10_000): Promise<true> {
  return eventually(
    async () => {
      const { rows } = await db.query<{ done: number }>(
        'SELECT count(*)::int AS done FROM tasks WHERE id = ANY($1::uuid[]) AND status = $2',
        [ids, TaskStatus.completed],
      );
      return rows[0]?.done === ids.length;
    },
    timeoutMs,
    `${ids.length} tasks to complete`,
  );
}

/** The ids in the order their (last) attempt started, by PostgreSQL's microsecond `started_at`. */
export async function startOrder(db: pg.Client, ids: readonly string[]): Promise<string[]> {
  const { rows } = await db.query<{ id: string }>(
    'SELECT id FROM tasks WHERE id = ANY($1::uuid[]) ORDER BY started_at, id',
    [ids],
  );
  return rows.map((row) => row.id);
}

/** Publishes a task message straight to the queue, as a second publisher (or a redelivery) would. */
export async function publishRaw(amqpUrl: string, queue: string, message: TaskMessage): Promise<void> {
  const connection = await amqplib.connect(amqpUrl);
  try {
    const channel = await connection.createConfirmChannel();
    channel.sendToQueue(queue, encodeTaskMessage(message), {
      persistent: true,
      priority: message.priority,
      messageId: message.taskId,
      contentType: 'application/json',
    });
    await channel.waitForConfirms();
  } finally {
    await connection.close();
  }
}

export { getTask, settled, taskIn };
