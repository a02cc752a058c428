import { koaBody } from 'koa-body';
import type { Middleware } from 'koa';
import { ConveyorError } from '../../core/src/errors.ts';

class UnsupportedMediaType extends ConveyorError {
  constructor(type: string) {
    super(`request bodies must be JSON (Content-Type: application/json); got ${type}`, {
      code: 'unsupported-media-type',
      status: 415,
    });
  }
}

class UnreadableBody extends ConveyorError {
  constructor(cause: unknown) {
    super(`the request body could not be read: ${(cause as Error).message}`, { code: 'unreadable-body', status: 400, cause });
  }
}

const noop = async () => undefined;

/**
 * Parses JSON request bodies. The API speaks only JSON, so a body sent without a Content-Type, or labelled
 * form-urlencoded (what `curl -d` does by default) or with any `+json` type, is read as JSON; any other media
 * type is a 415. A body that breaks off, or does not decode (a `Content-Encoding` it does not match), is the
 * client's fault: 400.
 */
export function jsonBody(limitBytes: number): Middleware {
  const parse = koaBody({ json: true, jsonStrict: true, jsonLimit: limitBytes, urlencoded: false, text: false, multipart: false });
  return async (ctx, next) => {
    const hasBody = (ctx.request.length ?? 0) > 0 || ctx.get('transfer-encoding') !== '';
    if (hasBody) {
      const type = ctx.get('content-type');
      if (type === '' || ctx.is('application/x-www-form-urlencoded', '+json')) ctx.req.headers['content-type'] = 'application/json';
      else if (!ctx.is('json')) throw new UnsupportedMediaType(type);
    }
    try {
      await parse(ctx, noop);
    } catch (error) {
      const status = (error as { status?: number }).status;
      // The rest of an oversized body is not worth reading: close the connection instead of draining it.
      if (status === 413) ctx.set('Connection', 'close');
      throw status !== undefined && status >= 400 && status < 500 ? error : new UnreadableBody(error);
    }
    await next();
  };
}
