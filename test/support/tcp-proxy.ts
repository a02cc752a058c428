// A TCP proxy on 127.0.0.1 that a test puts between a service and PostgreSQL or RabbitMQ, to break the link
// without touching the shared server itself. Two ways to break it:
// - `cut()`: close every connection and refuse new ones, as when the server restarts (both ends see it at once);
// - `blackhole()`: keep every socket open but move no byte and no close in either direction, as when a network
//   path dies silently; only timeouts (AMQP heartbeats, connect timeouts) can notice it.
// `heal()` ends either. After a blackhole, what was held back flows again, like TCP retransmitting after a short
// partition: a peer that gave up meanwhile closed its socket, and that close reaches the other end on heal.
import { createServer, type Server, type Socket, connect } from 'node:net';

export type ProxyMode = 'open' | 'cut' | 'blackhole';

/** One proxied connection. `upstream` is null while a connection made during a blackhole waits for the heal. */
type Link = { client: Socket; upstream: Socket | null; flowing: boolean; closed: boolean };

export class TcpProxy {
  readonly #target: { host: string; port: number };
  readonly #server: Server;
  readonly #links = new Set<Link>();
  #mode: ProxyMode = 'open';
  #accepted = 0;

  private constructor(target: { host: string; port: number }) {
    this.#target = target;
    this.#server = createServer((client) => this.#accept(client));
  }

  /** Starts a proxy to `host:port` on an ephemeral port. */
  static async start(host: string, port: number): Promise<TcpProxy> {
    const proxy = new TcpProxy({ host, port });
    await new Promise<void>((resolve) => proxy.#server.listen(0, '127.0.0.1', resolve));
    return proxy;
  }

  /** Starts a proxy to the host and port of `url` (default ports for postgres: and amqp:). */
  static async for(url: string): Promise<TcpProxy> {
    const parsed = new URL(url);
    const defaultPort = parsed.protocol.startsWith('amqp') ? 5672 : 5432;
    return TcpProxy.start(parsed.hostname, Number(parsed.port || defaultPort));
  }

  get port(): number {
    const address = this.#server.address();
    if (!address || typeof address === 'string') throw new Error('proxy not listening');
    return address.port;
  }

  get mode(): ProxyMode {
    return this.#mode;
  }

  /** Connections accepted since the start, for asserting that clients reconnected. */
  get accepted(): number {
    return this.#accepted;
  }

  /** Connections open right now (held ones included). */
  get open(): number {
    return this.#links.size;
  }

  /** `url` with its host and port replaced by the proxy's. */
  rewrite(url: string): string {
    const parsed = new URL(url);
    parsed.hostname = '127.0.0.1';
    parsed.port = String(this.port);
    return parsed.toString();
  }

  #accept(client: Socket): void {
    if (this.#mode === 'cut') {
      client.destroy();
      return;
    }
    this.#accepted += 1;
    const link: Link = { client, upstream: null, flowing: this.#mode === 'open', closed: false };
    this.#links.add(link);
    client.on('error', () => undefined);
    client.on('close', () => this.#closed(link));
    if (link.flowing) this.#connectUpstream(link);
    else client.pause();
  }

  #connectUpstream(link: Link): void {
    const upstream = connect(this.#target);
    link.upstream = upstream;
    upstream.on('error', () => undefined);
    upstream.on('close', () => this.#closed(link));
    this.#forward(link, link.client, upstream);
    this.#forward(link, upstream, link.client);
  }

  /** Copies `from` to `to` with backpressure; a paused link keeps its bytes in the sockets' buffers. */
  #forward(link: Link, from: Socket, to: Socket): void {
    from.on('data', (chunk: Buffer) => {
      if (to.write(chunk)) return;
      from.pause();
      to.once('drain', () => {
        if (link.flowing) from.resume();
      });
    });
    from.on('end', () => to.end());
  }

  /** One side closed: the other follows, unless the link is blackholed, which holds the news back until the heal. */
  #closed(link: Link): void {
    link.closed = true;
    if (link.flowing) this.#destroy(link);
  }

  #destroy(link: Link): void {
    link.closed = true;
    link.client.destroy();
    link.upstream?.destroy();
    this.#links.delete(link);
  }

  /** Drops every open connection and refuses new ones until {@link heal}. */
  cut(): void {
    this.#mode = 'cut';
    for (const link of [...this.#links]) this.#destroy(link);
  }

  /** Keeps every connection open but forwards nothing (bytes nor closes) until {@link heal}; new connections are held. */
  blackhole(): void {
    this.#mode = 'blackhole';
    for (const link of this.#links) {
      link.flowing = false;
      link.client.pause();
      link.upstream?.pause();
    }
  }

  /** Forwards again: held bytes flow, held closes propagate, held connections reach the target. */
  heal(): void {
    this.#mode = 'open';
    for (const link of [...this.#links]) {
      if (link.flowing) continue;
      link.flowing = true;
      if (link.closed) {
        this.#destroy(link);
        continue;
      }
      if (!link.upstream) this.#connectUpstream(link);
      link.client.resume();
      link.upstream?.resume();
    }
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
