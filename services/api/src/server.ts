import { createServer, type Server } from 'node:http';
import type { Duplex } from 'node:stream';
import type Koa from 'koa';
import { PROBLEM_TYPE_BASE } from './problem.ts';
import type { Config } from '../../core/src/config.ts';
import type { Logger } from '../../core/src/log.ts';

/** What Node's HTTP parser refuses (headers too large, malformed requests, slow clients), as a problem. */
function answerClientError(error: Error & { code?: string }, socket: Duplex): void {
  if (!socket.writable) return void socket.destroy();
  const [status, title] =
    error.code === 'HPE_HEADER_OVERFLOW'
      ? [431, 'Request Header Fields Too Large']
      : error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? [408, 'Request Timeout']
        : [400, 'Bad Request'];
  const body = JSON.stringify({
    type: `${PROBLEM_TYPE_BASE}${title.toLowerCase().replaceAll(' ', '-')}`,
    title,
    status,
    detail: status === 400 ? 'the request is not valid HTTP/1.1' : title.toLowerCase(),
    instance: '',
  });
  socket.end(
    `HTTP/1.1 ${status} ${title}\r\nContent-Type: application/problem+json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
      `X-Content-Type-Options: nosniff\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n${body}`,
  );
}

export type ServerOptions = Pick<Config, 'host' | 'port' | 'httpHeadersTimeoutMs' | 'httpRequestTimeoutMs'>;

/**
 * The HTTP server as a lifecycle component. A client that takes longer than the configured timeouts to send
 * its headers or its whole request gets a 408 and loses the connection, so slow clients cannot hold sockets.
 * Stopping closes the listener, ends idle keep-alive sockets at once and lets in-flight requests finish (their
 * sockets close after the response).
 */
export class HttpServer {
  readonly #server: Server;
  readonly #log: Logger;
  readonly #host: string;
  readonly #port: number;
  #stopping: Promise<void> | null = null;

  constructor(app: Koa, options: ServerOptions, log: Logger) {
    this.#server = createServer(
      {
        headersTimeout: options.httpHeadersTimeoutMs,
        requestTimeout: options.httpRequestTimeoutMs,
        // Longer than the usual load balancer idle timeout (60 s), so the balancer closes first and never reuses a closed socket.
        keepAliveTimeout: 65_000,
        // How often the timeouts above are enforced: a tenth of the shorter one, so a slow client is cut off close to its limit.
        connectionsCheckingInterval: Math.max(100, Math.min(options.httpHeadersTimeoutMs, options.httpRequestTimeoutMs) / 10),
      },
      app.callback(),
    );
    this.#server.on('clientError', answerClientError);
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
