/**
 * The base of every error Conveyor raises on purpose. `status` is the HTTP status the API answers with;
 * `code` is stable and machine-readable (it becomes the problem `type`).
 */
export class ConveyorError extends Error {
  readonly code: string;
  readonly status: number;
  /** Response headers the answer must carry (`WWW-Authenticate`, `Retry-After`). */
  readonly headers: Readonly<Record<string, string>>;

  constructor(message: string, options: { code: string; status: number; cause?: unknown; headers?: Record<string, string> }) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = options.code;
    this.status = options.status;
    this.headers = options.headers ?? {};
  }
}

/** One invalid field of a request, as reported in a problem's `errors`. */
export type FieldIssue = { path: string; message: string };

export class ValidationError extends ConveyorError {
  readonly errors: readonly FieldIssue[];

  constructor(message: string, errors: readonly FieldIssue[] = [], status = 422) {
    super(message, { code: 'validation-failed', status });
    this.errors = errors;
  }
}

export class TaskNotFound extends ConveyorError {
  constructor(id: string) {
    super(`task ${id} does not exist`, { code: 'task-not-found', status: 404 });
  }
}

/**
 * No valid API key: none sent, unknown, or revoked. The answer is the same for all three, and is given before
 * anything else is looked at, so it never tells whether a task exists.
 */
export class Unauthenticated extends ConveyorError {
  constructor(message: string, keySent: boolean) {
    const challenge = keySent ? 'Bearer realm="conveyor", error="invalid_token"' : 'Bearer realm="conveyor"';
    super(message, { code: 'unauthenticated', status: 401, headers: { 'WWW-Authenticate': challenge } });
  }
}

/** A valid key without the scope the request needs. */
export class Forbidden extends ConveyorError {
  constructor(scope: string) {
    super(`this API key lacks the '${scope}' scope`, {
      code: 'forbidden',
      status: 403,
      headers: { 'WWW-Authenticate': `Bearer realm="conveyor", error="insufficient_scope", scope="${scope}"` },
    });
  }
}

/** The key spent its request budget; `retryAfterSeconds` is when the next request will be let through. */
export class RateLimited extends ConveyorError {
  constructor(retryAfterSeconds: number) {
    super(`too many requests with this API key; retry in ${retryAfterSeconds} s`, {
      code: 'rate-limited',
      status: 429,
      headers: { 'Retry-After': String(retryAfterSeconds) },
    });
  }
}

export class ApiKeyNotFound extends ConveyorError {
  constructor(id: string) {
    super(`API key ${id} does not exist`, { code: 'api-key-not-found', status: 404 });
  }
}

/** The task exists but its status does not allow the requested change. */
export class TaskConflict extends ConveyorError {
  constructor(message: string) {
    super(message, { code: 'task-conflict', status: 409 });
  }
}

export class BrokerUnavailable extends ConveyorError {
  constructor(message = 'RabbitMQ is not reachable', cause?: unknown) {
    super(message, { code: 'broker-unavailable', status: 503, cause });
  }
}

export class DatabaseUnavailable extends ConveyorError {
  constructor(message = 'PostgreSQL is not reachable', cause?: unknown) {
    super(message, { code: 'database-unavailable', status: 503, cause });
  }
}

export class ConfigError extends ConveyorError {
  constructor(message: string) {
    super(message, { code: 'invalid-configuration', status: 500 });
  }
}

/** A lifecycle method was called in a state that does not allow it (e.g. `start()` after `stop()`). */
export class IllegalStateError extends ConveyorError {
  constructor(message: string) {
    super(message, { code: 'illegal-state', status: 500 });
  }
}

/**
 * Thrown by a handler for a failure that retrying cannot fix (bad input, a refused operation):
 * the task fails at once whatever attempts remain.
 */
export class PermanentTaskError extends ConveyorError {
  constructor(message: string, cause?: unknown) {
    super(message, { code: 'permanent-task-error', status: 500, cause });
  }
}
