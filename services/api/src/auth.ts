import type { Context, Middleware } from 'koa';
import { ALL_SCOPES, API_KEY_PATTERN, DEFAULT_TENANT, type Principal, type Scope } from '../../core/src/auth/api-key.ts';
import type { ApiKeysRepository } from '../../core/src/db/api-keys-repository.ts';
import { Forbidden, Unauthenticated } from '../../core/src/errors.ts';

/** Who acts when authentication is off: the one tenant, with every scope. */
const EVERYONE: Principal = Object.freeze({ keyId: null, tenant: DEFAULT_TENANT, scopes: new Set(ALL_SCOPES) });

/** Past this many cached lookups the oldest are dropped, so that a flood of made-up keys cannot grow memory. */
const MAX_CACHED_KEYS = 10_000;

export type AuthOptions = { mode: 'apikey' | 'none'; cacheMs: number; keys: ApiKeysRepository };

/**
 * Resolves `Authorization: Bearer <key>` to a {@link Principal}. Lookups (unknown keys too) are cached for
 * `cacheMs`, so a busy key costs no query per request; a revocation made through this process applies at once,
 * one made elsewhere within `cacheMs`.
 */
export class Authenticator {
  readonly #options: AuthOptions;
  readonly #cache = new Map<string, { principal: Principal | null; until: number }>();

  constructor(options: AuthOptions) {
    this.#options = options;
  }

  get enabled(): boolean {
    return this.#options.mode === 'apikey';
  }

  /**
   * The principal behind an `Authorization` header.
   * @throws {Unauthenticated} when the header is missing or malformed, or names no active key.
   */
  async principal(authorization: string): Promise<Principal> {
    if (!this.enabled) return EVERYONE;
    // Another scheme (Basic…) is no attempt at a bearer key: RFC 6750 answers it with a bare challenge.
    if (!/^Bearer(\s|$)/i.test(authorization)) throw new Unauthenticated('an API key is required: send Authorization: Bearer <key>', false);
    const secret = /^Bearer +(\S+) *$/i.exec(authorization)?.[1] ?? '';
    const found = API_KEY_PATTERN.test(secret) ? await this.#lookup(secret) : null;
    if (!found) throw new Unauthenticated('the API key is not valid: it is malformed, unknown or revoked', true);
    return found;
  }

  /** Drops what this process remembers about a key (it was just revoked). */
  forget(keyId: string): void {
    for (const [secret, entry] of this.#cache) if (entry.principal?.keyId === keyId) this.#cache.delete(secret);
  }

  async #lookup(secret: string): Promise<Principal | null> {
    const now = Date.now();
    const cached = this.#cache.get(secret);
    if (cached && cached.until > now) return cached.principal;
    const principal = await this.#options.keys.principalFor(secret);
    if (this.#options.cacheMs > 0) {
      this.#cache.delete(secret);
      if (this.#cache.size >= MAX_CACHED_KEYS) this.#cache.delete(this.#cache.keys().next().value as string);
      this.#cache.set(secret, { principal, until: now + this.#options.cacheMs });
    }
    return principal;
  }
}

/**
 * Requires a valid key on every path except those `isOpen` lets through, before any body is read or any task
 * looked up, so that a refused request learns nothing. The principal is left in `ctx.state.principal`.
 */
export function authenticate(auth: Authenticator, isOpen: (path: string) => boolean): Middleware {
  return async (ctx, next) => {
    if (!isOpen(ctx.path)) ctx.state['principal'] = await auth.principal(ctx.get('authorization'));
    await next();
  };
}

/** The principal of an authenticated request. */
export function principalOf(ctx: Context): Principal {
  const principal = ctx.state['principal'] as Principal | undefined;
  if (!principal) throw new Unauthenticated('an API key is required: send Authorization: Bearer <key>', false);
  return principal;
}

/** Lets the request through only when its key holds `scope` (403 otherwise). */
export function requireScope(scope: Scope): Middleware {
  return async (ctx, next) => {
    if (!principalOf(ctx).scopes.has(scope)) throw new Forbidden(scope);
    await next();
  };
}
