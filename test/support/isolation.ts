// Each test file gets its own database and its own queue names, and removes them when it is done.
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import amqplib from 'amqplib';
import pg from 'pg';
import { services } from './services.ts';

export const uniqueName = (prefix: string) => `${prefix}_${randomBytes(5).toString('hex')}`;

/** A database URL on the test server with a fresh, not yet created, database name. */
export async function freshDatabaseUrl(): Promise<string> {
  const url = new URL((await services()).databaseUrl);
  url.pathname = `/${uniqueName('conveyor_test')}`;
  return url.toString();
}

/** Drops the database named in `url`, closing whatever still uses it. */
export async function dropDatabase(url: string): Promise<void> {
  const admin = new URL(url);
  const name = admin.pathname.slice(1);
  admin.pathname = '/postgres';
  const client = new pg.Client({ connectionString: admin.toString() });
  await client.connect();
  try {
    await client.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`);
  } finally {
    await client.end();
  }
}

/** A TCP port on 127.0.0.1 that nothing listens on right now. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  if (!address || typeof address === 'string') throw new Error('no free port');
  return address.port;
}

/** A queue name no other test uses. */
export const freshQueueName = () => uniqueName('tasks').replace('_', '-');

export async function deleteQueues(names: readonly string[]): Promise<void> {
  const connection = await amqplib.connect((await services()).amqpUrl);
  try {
    const channel = await connection.createChannel();
    for (const name of names) await channel.deleteQueue(name);
  } finally {
    await connection.close();
  }
}

/** Deletes exchanges a test's services declared (the control exchange of each tasks queue). */
export async function deleteExchanges(names: readonly string[]): Promise<void> {
  const connection = await amqplib.connect((await services()).amqpUrl);
  try {
    const channel = await connection.createChannel();
    for (const name of names) await channel.deleteExchange(name);
  } finally {
    await connection.close();
  }
}

/** Messages ready for delivery in a queue (not counting those delivered and not yet acked). */
export async function queueDepth(name: string): Promise<number> {
  const connection = await amqplib.connect((await services()).amqpUrl);
  try {
    const channel = await connection.createChannel();
    const { messageCount } = await channel.checkQueue(name);
    return messageCount;
  } finally {
    await connection.close();
  }
}
