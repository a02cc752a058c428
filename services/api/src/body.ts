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

/**
 * Parses JSON request bodies. The API speaks only JSON, so a body sent without a Content-Type, or labelled
 * form-urlencoded (what `curl -d` does by default), is read as JSON too; any other media type is a 415.
 */
export function jsonBody(limitBytes: number): Middleware {
  const parse = koaBody({ json: true, jsonStrict: true, jsonLimit: limitBytes, urlencoded: false, text: false, multipart: false });
  return async (ctx, next) => {
    const hasBody = (ctx.request.length ?? 0) > 0 || ctx.get('transfer-encoding') !== '';
    if (hasBody) {
      const type = ctx.get('content-type');
      if (type === '' || ctx.is('application/x-www-form-urlencoded')) ctx.req.headers['content-type'] = 'application/json';
      else if (!ctx.is('json', '+json')) throw new UnsupportedMediaType(type);
    }
    return parse(ctx, next);
  };
}
