import { createServer, type Server } from 'node:http';
import type Koa from 'koa';
import type { Logger } from '../../core/src/log.ts';

/**
 * The HTTP server as a lifecycle component. Stopping closes the listener, ends idle keep-alive sockets at
 * once and lets in-flight requests finish (their sockets close after the response).
 */
export class HttpServer {
  readonly #server: Server;
  readonly #log: Logger;
  readonly #host: string;
  readonly #port: number;
  #stopping: Promise<void> | null = null;

  constructor(app: Koa, options: { host: string; port: number }, log: Logger) {
    this.#server = createServer(app.callback());
    this.#server.keepAliveTimeout = 65_000;
    this.#host = options.host;
    this.#port = options.port;
    this.#log = log.child({ component: 'http' });
  }

  /** The port actually bound (useful with port 0). */
  get port(): number {
    const address = this.#server.address();
    return typeof address === 'object' && address ? address.port : this.#port;
  }

  start(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(this.#port, this.#host, () => {
        this.#server.off('error', reject);
        this.#log.info({ host: this.#host, port: this.port }, 'listening');
        resolve();
      });
    });
  }

  stop(): Promise<void> {
    this.#stopping ??= new Promise<void>((resolve) => {
      if (!this.#server.listening) return resolve();
      this.#server.close(() => resolve());
      this.#server.closeIdleConnections();
    });
    return this.#stopping;
  }
}
