import { type DatabasePool, sql } from 'slonik';
import { z } from 'zod';
import { type Principal, type Scope, ScopeSchema, hashApiKey, keyHint, newApiKey } from '../auth/api-key.ts';
import { ApiKeyNotFound } from '../errors.ts';
import { newId } from '../ids.ts';
import { translated } from './errors.ts';

/** A key as it is listed: never the secret, only a hint of its first characters. */
export const ApiKeySchema = z
  .object({
    id: z.uuid(),
    tenant: z.string(),
    name: z.string(),
    scopes: z.array(ScopeSchema),
    hint: z.string().meta({ description: 'The first characters of the key, to tell keys apart.' }),
    createdAt: z.iso.datetime(),
    revokedAt: z.iso.datetime().nullable(),
  })
  .meta({ id: 'ApiKey' });

export type ApiKey = z.infer<typeof ApiKeySchema>;

const KEY_COLUMNS = sql.fragment`id, tenant, name, scopes, hint, created_at AS "createdAt", revoked_at AS "revokedAt"`;
const keyRow = sql.type(ApiKeySchema);
const principalRow = sql.type(z.object({ id: z.uuid(), tenant: z.string(), scopes: z.array(z.string()) }));

export type NewApiKey = { tenant: string; scopes: readonly Scope[]; name?: string | undefined };

const insertKey = (input: NewApiKey, secret: string) => sql.fragment`
  INSERT INTO api_keys (id, tenant, name, scopes, secret_hash, hint)
  VALUES (${newId()}, ${input.tenant}, ${input.name ?? ''}, ${sql.array([...input.scopes], 'text')}, ${hashApiKey(secret)}, ${keyHint(secret)})`;

/** API keys, stored as hashes. Every method throws {@link DatabaseUnavailable} when PostgreSQL cannot be reached. */
export class ApiKeysRepository {
  readonly #pool: DatabasePool;

  constructor(pool: DatabasePool) {
    this.#pool = pool;
  }

  /** Creates a key. The secret is in the answer and nowhere else: only its hash is stored. */
  async createKey(input: NewApiKey): Promise<{ key: ApiKey; secret: string }> {
    const secret = newApiKey();
    const key = await this.#insert(input, secret);
    return { key, secret };
  }

  /**
   * Makes sure a key chosen by the operator (the chart's bootstrap Secret) exists, unless it was revoked: a
   * revoked bootstrap key stays revoked across restarts.
   */
  async ensureKey(input: NewApiKey, secret: string): Promise<void> {
    await translated(() => this.#pool.query(sql.unsafe`${insertKey(input, secret)} ON CONFLICT (secret_hash) DO NOTHING`));
  }

  async #insert(input: NewApiKey, secret: string): Promise<ApiKey> {
    return translated(() => this.#pool.one(keyRow`${insertKey(input, secret)} RETURNING ${KEY_COLUMNS}`));
  }

  /** Who a secret belongs to; null when it is unknown or revoked. */
  async principalFor(secret: string): Promise<Principal | null> {
    const row = await translated(() =>
      this.#pool.maybeOne(principalRow`SELECT id, tenant, scopes FROM api_keys WHERE secret_hash = ${hashApiKey(secret)} AND revoked_at IS NULL`),
    );
    if (!row) return null;
    return Object.freeze({ keyId: row.id, tenant: row.tenant, scopes: new Set(row.scopes as Scope[]) });
  }

  /** Every key, or one tenant's, oldest first. */
  async listKeys(tenant?: string): Promise<readonly ApiKey[]> {
    const where = tenant === undefined ? sql.fragment`TRUE` : sql.fragment`tenant = ${tenant}`;
    return translated(() => this.#pool.any(keyRow`SELECT ${KEY_COLUMNS} FROM api_keys WHERE ${where} ORDER BY id`));
  }

  /**
   * Revokes a key for good; revoking it again changes nothing.
   * @throws {ApiKeyNotFound}
   */
  async revokeKey(id: string): Promise<ApiKey> {
    const row = await translated(() =>
      this.#pool.maybeOne(keyRow`
        UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = ${id} RETURNING ${KEY_COLUMNS}`),
    );
    if (!row) throw new ApiKeyNotFound(id);
    return row;
  }
}
