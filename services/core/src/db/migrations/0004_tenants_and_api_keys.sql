-- Tenants and API keys: every task belongs to the tenant of the key that created it, and no other tenant sees it.
ALTER TABLE tasks ADD COLUMN tenant text NOT NULL DEFAULT 'default';

-- Idempotency keys are per tenant: two tenants choosing the same key get two tasks.
DROP INDEX tasks_idempotency_key_idx;
CREATE UNIQUE INDEX tasks_tenant_idempotency_key_idx ON tasks (tenant, idempotency_key) WHERE idempotency_key IS NOT NULL;

-- Lists are always one tenant's, newest first, optionally by status (a type filter reads the tenant's index).
DROP INDEX tasks_type_id_idx;
DROP INDEX tasks_status_id_idx;
CREATE INDEX tasks_tenant_id_idx ON tasks (tenant, id DESC);
CREATE INDEX tasks_tenant_status_id_idx ON tasks (tenant, status, id DESC);

-- Keys are stored only as SHA-256 hashes of the secret; a revoked key is kept (revoked_at) so lists explain it.
CREATE TABLE api_keys (
  id           uuid PRIMARY KEY,
  tenant       text NOT NULL,
  name         text NOT NULL DEFAULT '',
  scopes       text[] NOT NULL CHECK (cardinality(scopes) > 0),
  secret_hash  text NOT NULL UNIQUE,
  hint         text NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now(),
  revoked_at   timestamptz
);
CREATE INDEX api_keys_tenant_idx ON api_keys (tenant, id);
