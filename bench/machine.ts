import { cpus, totalmem } from 'node:os';
import amqplib from 'amqplib';
import pg from 'pg';

/** What the figures were measured on: they mean little without it. */
export async function describeMachine(databaseUrl: string, amqpUrl: string): Promise<Record<string, string | number>> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  const setting = async (name: string) => String((await client.query(`SHOW ${name}`)).rows[0][name]);
  const postgres = { version: await setting('server_version'), fsync: await setting('fsync'), synchronousCommit: await setting('synchronous_commit') };
  await client.end();
  const connection = await amqplib.connect(amqpUrl);
  const rabbitmq = String((connection.connection as unknown as { serverProperties: { version: string } }).serverProperties.version);
  await connection.close();
  return {
    cpus: cpus().length,
    cpu: cpus()[0]?.model ?? 'unknown',
    memoryGb: Math.round(totalmem() / 1024 ** 3),
    node: process.version,
    postgresql: postgres.version,
    'postgresql fsync': postgres.fsync,
    'postgresql synchronous_commit': postgres.synchronousCommit,
    rabbitmq,
  };
}
