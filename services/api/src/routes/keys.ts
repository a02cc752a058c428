import Router from '@koa/router';
import { z } from 'zod';
import { Scope, ScopeSchema, TenantSchema } from '../../../core/src/auth/api-key.ts';
import type { ApiKeysRepository } from '../../../core/src/db/api-keys-repository.ts';
import type { Logger } from '../../../core/src/log.ts';
import { storableText } from '../../../core/src/storable.ts';
import { type Authenticator, principalOf, requireScope } from '../auth.ts';
import { jsonBody } from '../body.ts';
import { validated } from '../schemas.ts';

export const KEYS_PATH = '/api/v1/keys';

export const CreateKeySchema = z
  .object({
    tenant: TenantSchema,
    scopes: z.array(ScopeSchema).min(1).max(10).transform((scopes) => [...new Set(scopes)]),
    name: storableText(z.string().max(200)).optional().meta({ description: 'What the key is for.' }),
  })
  .strict()
  .meta({ id: 'CreateApiKey' });

const KeyIdSchema = z.uuid({ error: 'must be a key id (a UUID)' });

export const KeysQuerySchema = z.object({ tenant: TenantSchema.optional() }).strict();

export type KeysDeps = { keys: ApiKeysRepository; auth: Authenticator; bodyLimitBytes: number; log: Logger };

/** Key management, for `admin` keys: create (the secret is in the answer, once), list, revoke. */
export function keysRouter(deps: KeysDeps): Router {
  const router = new Router({ prefix: KEYS_PATH });
  router.use(requireScope(Scope.admin));

  router.post('/', jsonBody(deps.bodyLimitBytes), async (ctx) => {
    const input = validated(CreateKeySchema, ctx.request.body, 'key', 422);
    const { key, secret } = await deps.keys.createKey(input);
    deps.log.info({ keyId: key.id, tenant: key.tenant, scopes: key.scopes, by: principalOf(ctx).keyId }, 'API key created');
    ctx.status = 201;
    ctx.set('Location', `${KEYS_PATH}/${key.id}`);
    ctx.body = { ...key, key: secret };
  });

  router.get('/', async (ctx) => {
    const { tenant } = validated(KeysQuerySchema, ctx.query, 'query', 400);
    ctx.body = { items: await deps.keys.listKeys(tenant) };
  });

  router.delete('/:id', async (ctx) => {
    const id = validated(KeyIdSchema, ctx.params['id'], 'key id', 400);
    const key = await deps.keys.revokeKey(id);
    deps.auth.forget(key.id);
    deps.log.info({ keyId: key.id, tenant: key.tenant, by: principalOf(ctx).keyId }, 'API key revoked');
    ctx.body = key;
  });

  return router;
}
