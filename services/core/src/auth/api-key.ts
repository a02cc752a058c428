import { createHash, randomBytes } from 'node:crypto';
import { z } from 'zod';

/** What a key may do. Scopes are independent: `admin` manages keys and does not imply the task scopes. */
export const Scope = Object.freeze({
  /** Read tasks, their lists and their history. */
  tasksRead: 'tasks:read',
  /** Submit, cancel, retry and delete tasks. */
  tasksWrite: 'tasks:write',
  /** Create, list and revoke API keys, for every tenant; read `/metrics` when it is not public. */
  admin: 'admin',
} as const);

export type Scope = (typeof Scope)[keyof typeof Scope];

export const ALL_SCOPES: readonly Scope[] = Object.freeze(Object.values(Scope));

export const ScopeSchema = z.enum(Scope).meta({ description: 'tasks:read, tasks:write or admin.' });

/**
 * A tenant name. The same shape as a Kubernetes namespace (a DNS label), since Task resources belong to the
 * tenant named after their namespace.
 */
export const TenantSchema = z
  .string()
  .regex(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/, 'must be a DNS label: lowercase letters, digits and -, at most 63 characters')
  .meta({ description: 'The tenant a key acts for; its tasks are invisible to every other tenant.' });

/** The tenant that owns tasks when authentication is off, and the bootstrap key's default tenant. */
export const DEFAULT_TENANT = 'default';

/** Who is making a request: the key's id (null when authentication is off), its tenant and its scopes. */
export type Principal = Readonly<{ keyId: string | null; tenant: string; scopes: ReadonlySet<Scope> }>;

const KEY_PREFIX = 'cvy_';
/** `cvy_` and 32 random bytes in base64url: 256 bits, so a fast hash is enough to store it (as with GitHub tokens). */
export const API_KEY_PATTERN = /^cvy_[A-Za-z0-9_-]{43}$/;

/** A new secret key; it is shown once and only its hash is stored. */
export function newApiKey(): string {
  return KEY_PREFIX + randomBytes(32).toString('base64url');
}

/** The stored form of a key. */
export function hashApiKey(key: string): string {
  return createHash('sha256').update(key).digest('hex');
}

/** The first characters of a key, enough to tell keys apart in a list without revealing them. */
export function keyHint(key: string): string {
  return `${key.slice(0, KEY_PREFIX.length + 4)}…`;
}
