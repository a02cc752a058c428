import type { Middleware } from 'koa';

const COMMON = {
  'X-Content-Type-Options': 'nosniff',
  'X-Frame-Options': 'DENY',
  'Referrer-Policy': 'no-referrer',
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Resource-Policy': 'same-origin',
};

// The API answers JSON, which needs nothing; the Swagger UI needs its own scripts and styles (inline styles
// come from its React components), and the data: icons in its stylesheet.
const API_POLICY = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";
const DOCS_POLICY =
  "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/**
 * Security headers on every response, errors included. Responses are not cached by default (they hold task
 * data); a route may allow it (the Swagger UI assets). HSTS is sent when the request came over HTTPS (through
 * the Ingress, which says so in `X-Forwarded-Proto`).
 */
export function securityHeaders(): Middleware {
  return async (ctx, next) => {
    ctx.set(COMMON);
    ctx.set('Content-Security-Policy', ctx.path === '/docs' || ctx.path.startsWith('/docs/') ? DOCS_POLICY : API_POLICY);
    ctx.set('Cache-Control', 'no-store');
    if (ctx.secure) ctx.set('Strict-Transport-Security', 'max-age=31536000; includeSubDomains');
    await next();
  };
}
