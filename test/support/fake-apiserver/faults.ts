// Injected failures, checked before a request reaches the verbs: a number of requests to a resource that fail with a
// given code, and an outage during which every request gets 503 as from an apiserver behind a load balancer.
import { serviceUnavailable, StatusError, type StatusReason } from './errors.ts';
import type { RequestRecord } from './request-log.ts';

export interface FaultOptions {
  /** Only this verb (get, list, watch, create, update, patch, delete, deletecollection); default any. */
  verb?: string;
  /** Only this subresource (status, scale); default any, including none. */
  subresource?: string;
  /** HTTP status to answer with; default 500. */
  code?: number;
}

interface FaultRule extends FaultOptions {
  resource: string;
  remaining: number;
}

const REASONS: Record<number, StatusReason> = { 409: 'Conflict', 429: 'TooManyRequests', 500: 'InternalError', 503: 'ServiceUnavailable', 504: 'Timeout' };

export class Faults {
  readonly #rules: FaultRule[] = [];
  #unavailable = false;
  #timer: NodeJS.Timeout | undefined;

  /** The next `count` matching requests to `resource` fail. */
  failNext(resource: string, count: number, options: FaultOptions = {}): void {
    this.#rules.push({ ...options, resource, remaining: count });
  }

  /** Starts (true) or ends (false) an outage. */
  setUnavailable(unavailable: boolean): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#unavailable = unavailable;
  }

  /** An outage that ends by itself after `ms`. */
  unavailableFor(ms: number): void {
    this.setUnavailable(true);
    this.#timer = setTimeout(() => this.setUnavailable(false), ms);
  }

  get unavailable(): boolean {
    return this.#unavailable;
  }

  /** The error to answer `request` with, if a fault applies (and is used up by it). */
  take(request: RequestRecord): StatusError | undefined {
    if (this.#unavailable) return serviceUnavailable();
    const rule = this.#rules.find(
      (candidate) =>
        candidate.remaining > 0 &&
        candidate.resource === request.resource &&
        (candidate.verb === undefined || candidate.verb === request.verb) &&
        (candidate.subresource === undefined || candidate.subresource === request.subresource),
    );
    if (!rule) return undefined;
    rule.remaining -= 1;
    const code = rule.code ?? 500;
    const message = code === 500 ? 'Internal error occurred: injected fault' : `injected fault (${code})`;
    return new StatusError(code, REASONS[code] ?? 'InternalError', message);
  }

  /** Pending fault count, so a test can assert its faults were all hit. */
  pending(): number {
    return this.#rules.reduce((sum, rule) => sum + rule.remaining, 0);
  }

  clear(): void {
    this.#rules.length = 0;
    this.setUnavailable(false);
  }
}
