// Every request the fake received, by verb and resource, so tests can assert how a client talked to the server
// (e.g. "the informer relisted", "the controller patched the scale once") and await a request instead of sleeping.

export interface RequestRecord {
  method: string;
  /** Kubernetes verb: get, list, watch, create, update, patch, delete, deletecollection. */
  verb: string;
  /** `pods`, `deployments.apps`, `workerpools.conveyor.dev`; '' for discovery and unknown paths. */
  resource: string;
  subresource: string | undefined;
  namespace: string | undefined;
  name: string | undefined;
  query: Record<string, string>;
  contentType: string | undefined;
  /** HTTP status answered (for a watch: 200 once the stream opened). */
  code: number;
}

export type RequestFilter = Partial<Pick<RequestRecord, 'method' | 'verb' | 'resource' | 'subresource' | 'namespace' | 'name' | 'code'>>;

function matches(record: RequestRecord, filter: RequestFilter): boolean {
  return Object.entries(filter).every(([key, value]) => value === undefined || record[key as keyof RequestFilter] === value);
}

export class RequestLog {
  readonly #records: RequestRecord[] = [];
  readonly #waiters = new Set<{ filter: RequestFilter; resolve: (record: RequestRecord) => void }>();

  add(record: RequestRecord): void {
    this.#records.push(record);
    for (const waiter of this.#waiters) {
      if (matches(record, waiter.filter)) {
        this.#waiters.delete(waiter);
        waiter.resolve(record);
      }
    }
  }

  find(filter: RequestFilter = {}): RequestRecord[] {
    return this.#records.filter((record) => matches(record, filter));
  }

  count(filter: RequestFilter = {}): number {
    return this.find(filter).length;
  }

  clear(): void {
    this.#records.length = 0;
  }

  /** Resolves with the next matching request answered after this call. @throws Error after `timeoutMs` */
  next(filter: RequestFilter, timeoutMs: number): Promise<RequestRecord> {
    return new Promise((resolve, reject) => {
      const waiter = {
        filter,
        resolve: (record: RequestRecord) => {
          clearTimeout(timer);
          resolve(record);
        },
      };
      const timer = setTimeout(() => {
        this.#waiters.delete(waiter);
        reject(new Error(`fake-apiserver: no request matching ${JSON.stringify(filter)} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#waiters.add(waiter);
    });
  }
}
