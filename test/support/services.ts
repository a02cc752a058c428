// Finds the PostgreSQL and RabbitMQ the tests run against: DATABASE_URL / AMQP_URL when set, else the local
// services when they answer, else containers started with testcontainers (on machines with Docker).
import { connect } from 'node:net';

const LOCAL = { database: 'postgres://postgres@127.0.0.1:5432/postgres', amqp: 'amqp://guest:guest@127.0.0.1:5672' };

export type Services = { databaseUrl: string; amqpUrl: string };

function reachable(url: string): Promise<boolean> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = connect({ host: hostname, port: Number(port), timeout: 1_000 });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
  });
}

async function postgres(): Promise<string> {
  if (process.env['DATABASE_URL']) return process.env['DATABASE_URL'];
  if (await reachable(LOCAL.database)) return LOCAL.database;
  const { PostgreSqlContainer } = await import('@testcontainers/postgresql');
  const container = await new PostgreSqlContainer('postgres:15-alpine').start();
  return container.getConnectionUri();
}

async function rabbitmq(): Promise<string> {
  if (process.env['AMQP_URL']) return process.env['AMQP_URL'];
  if (await reachable(LOCAL.amqp)) return LOCAL.amqp;
  const { RabbitMQContainer } = await import('@testcontainers/rabbitmq');
  const container = await new RabbitMQContainer('rabbitmq:3.13-alpine').start();
  return container.getAmqpUrl();
}

let resolved: Promise<Services> | null = null;

/** Resolved once per test run; containers (if any) live until the process exits. */
export function services(): Promise<Services> {
  resolved ??= Promise.all([postgres(), rabbitmq()]).then(([databaseUrl, amqpUrl]) => ({ databaseUrl, amqpUrl }));
  return resolved;
}
