import type { Context, Middleware } from 'koa';
import { ConveyorError, type FieldIssue, ValidationError } from '../../core/src/errors.ts';

export const PROBLEM_TYPE_BASE = 'https://conveyor.dev/problems/';

/** An RFC 9457 problem details object. */
export type Problem = {
  type: string;
  title: string;
  status: number;
  detail: string;
  instance: string;
  errors?: readonly FieldIssue[];
  /** Readiness: the state of each dependency. */
  checks?: Record<string, string>;
};

type ProblemInput = Omit<Problem, 'instance' | 'title'> & { title?: string };

const TITLES: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  408: 'Request Timeout',
  405: 'Method Not Allowed',
  409: 'Conflict',
  413: 'Content Too Large',
  415: 'Unsupported Media Type',
  422: 'Unprocessable Content',
  429: 'Too Many Requests',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  501: 'Not Implemented',
  503: 'Service Unavailable',
};

const slug = (status: number) => (TITLES[status] ?? `HTTP ${status}`).toLowerCase().replace(/[^a-z0-9]+/g, '-');

/** Writes a problem as the response. */
export function sendProblem(ctx: Context, problem: ProblemInput): void {
  ctx.status = problem.status;
  ctx.type = 'application/problem+json';
  ctx.body = { title: TITLES[problem.status] ?? 'Error', ...problem, instance: ctx.path };
}

type HttpLikeError = Error & { status?: number; statusCode?: number; expose?: boolean; headers?: Record<string, string> };

function describe(error: unknown): ProblemInput & { headers?: Record<string, string> } {
  if (error instanceof ConveyorError && error.status < 500) {
    const base = { type: PROBLEM_TYPE_BASE + error.code, status: error.status, detail: error.message, headers: { ...error.headers } };
    return error instanceof ValidationError && error.errors.length > 0 ? { ...base, errors: error.errors } : base;
  }
  if (error instanceof ConveyorError && error.status === 503) {
    return { type: PROBLEM_TYPE_BASE + error.code, status: 503, detail: error.message, headers: { 'Retry-After': '5' } };
  }
  const http = error as HttpLikeError;
  const status = http.status ?? http.statusCode;
  // Errors from Koa, koa-body and the router carry a 4xx status and a message meant for the client.
  if (typeof status === 'number' && status >= 400 && status < 500) {
    return { type: PROBLEM_TYPE_BASE + slug(status), status, detail: http.message, ...(http.headers ? { headers: http.headers } : {}) };
  }
  return { type: PROBLEM_TYPE_BASE + 'internal-error', status: 500, detail: 'An unexpected error occurred; it has been logged.' };
}

/** A problem for a status the router set without a body (no route, method not allowed). */
function bodiless(ctx: Context): ProblemInput {
  const { status, method, path } = ctx;
  const detail =
    status === 404
      ? `no route for ${method} ${path}`
      : status === 405
        ? `${method} is not allowed on ${path}; allowed: ${ctx.response.get('Allow')}`
        : status === 501
          ? `${method} is not implemented by this API`
          : (TITLES[status] ?? `HTTP ${status}`);
  return { type: PROBLEM_TYPE_BASE + slug(status), status, detail };
}

/**
 * Turns every error, and every unmatched route, into an `application/problem+json` response.
 * 5xx details are generic; the error itself goes to `app.on('error')` to be logged once.
 */
export function problemDetails(): Middleware {
  return async (ctx, next) => {
    try {
      await next();
      if (ctx.status >= 400 && ctx.body == null) sendProblem(ctx, bodiless(ctx));
    } catch (error) {
      const { headers, ...problem } = describe(error);
      if (headers) ctx.set(headers);
      sendProblem(ctx, problem);
      if (problem.status >= 500) ctx.app.emit('error', error, ctx);
    }
  };
}
