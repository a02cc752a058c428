import { createServer, type Server } from 'node:http';
import Koa from 'koa';
import type { Registry } from 'prom-client';
import type { Logger } from './log.ts';

export type ProbeOptions = {
  registry: Registry;
  /** Names of the dependencies that are down; empty when ready. */
  unavailable: () => Promise<string[]>;
  host: string;
  port: number;
};

/**
 * The small HTTP server of a process without an API (worker, controller): `/metrics`, `/healthz`, `/readyz`.
 * A port already taken (several workers on one machine) is logged and skipped: probes must not stop the work.
 */
export class ProbeServer {
  readonly #server: Server;
  readonly #options: ProbeOptions;
  readonly #log: Logger;

  constructor(options: ProbeOptions, log: Logger) {
    this.#options = options;
    this.#log = log.child({ component: 'probes' });
    const app = new Koa();
    app.use(async (ctx) => {
      if (ctx.method !== 'GET') {
        ctx.status = 405;
        return;
      }
      if (ctx.path === '/metrics') {
        ctx.type = options.registry.contentType;
        ctx.body = await options.registry.metrics();
      } else if (ctx.path === '/healthz') {
        ctx.body = { status: 'ok' };
      } else if (ctx.path === '/readyz') {
        const down = await options.unavailable();
        ctx.status = down.length === 0 ? 200 : 503;
        ctx.body = down.length === 0 ? { status: 'ok' } : { status: 'unavailable', down };
      }
    });
    this.#server = createServer(app.callback());
  }

  get port(): number | null {
    const address = this.#server.address();
    return typeof address === 'object' && address ? address.port : null;
  }

  start(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#server.once('error', (error: NodeJS.ErrnoException) => {
        if (error.code !== 'EADDRINUSE') return reject(error);
        this.#log.warn({ port: this.#options.port }, 'metrics port in use; probes disabled (set METRICS_PORT)');
        resolve();
      });
      this.#server.listen(this.#options.port, this.#options.host, () => {
        this.#log.info({ port: this.port }, 'probes listening');
        resolve();
      });
    });
  }

  stop(): Promise<void> {
    return new Promise((resolve) => {
      if (!this.#server.listening) return resolve();
      this.#server.close(() => resolve());
      this.#server.closeIdleConnections();
    });
  }
}
