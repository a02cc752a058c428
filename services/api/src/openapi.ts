import { z } from 'zod';
import { BackoffSchema } from '../../core/src/tasks/backoff.ts';
import { JsonValueSchema, TaskErrorSchema, TaskEventSchema, TaskSchema } from '../../core/src/tasks/model.ts';
import { TASK_TYPES } from '../../core/src/tasks/registry.ts';
import { BATCH_LIMITS, SubmitBatchSchema, SubmitTaskSchema } from '../../core/src/tasks/submission.ts';
import { ApiKeySchema } from '../../core/src/db/api-keys-repository.ts';
import { ListTasksQuerySchema, ProblemSchema, TaskIdSchema, TaskListSchema, HealthSchema } from './schemas.ts';
import { CreateKeySchema, KEYS_PATH } from './routes/keys.ts';
import { TASKS_PATH } from './routes/tasks.ts';

const ref = (id: string) => ({ $ref: `#/components/schemas/${id}` });
const json = (schema: object) => ({ 'application/json': { schema } });
const problem = (description: string) => ({ description, content: { 'application/problem+json': { schema: ref('Problem') } } });

/** JSON Schema (2020-12, as OpenAPI 3.1 uses) of every named schema, with references between them. */
function components(): Record<string, unknown> {
  const registry = z.registry<{ id: string; description?: string }>();
  const named = [JsonValueSchema, TaskErrorSchema, BackoffSchema, TaskSchema, TaskEventSchema, SubmitTaskSchema, SubmitBatchSchema, TaskListSchema, ProblemSchema, HealthSchema, ApiKeySchema, CreateKeySchema];
  for (const schema of named) {
    registry.add(schema, { id: (schema.meta() as { id: string }).id });
  }
  for (const [name, type] of TASK_TYPES) {
    if (!registry.has(type.payload)) registry.add(type.payload, { id: `${name}Payload`, description: type.description });
  }
  const { schemas } = z.toJSONSchema(registry, { io: 'input', uri: (id) => `#/components/schemas/${id}`, unrepresentable: 'any' });
  for (const schema of Object.values(schemas)) {
    delete (schema as { $schema?: string }).$schema;
    delete (schema as { $id?: string }).$id;
  }
  return schemas;
}

function queryParameters(): object[] {
  const schema = z.toJSONSchema(ListTasksQuerySchema, { io: 'input', unrepresentable: 'any' }) as {
    properties: Record<string, { description?: string }>;
  };
  return Object.entries(schema.properties).map(([name, property]) => ({ name, in: 'query', required: false, schema: property }));
}

const idParameter = { name: 'id', in: 'path', required: true, schema: z.toJSONSchema(TaskIdSchema) };
const keyIdParameter = { name: 'id', in: 'path', required: true, schema: { type: 'string', format: 'uuid' } };

/** What every keyed operation may answer besides its own responses. */
function keyed(scope: string, responses: Record<string, unknown>): Record<string, unknown> {
  return {
    ...responses,
    '401': problem('No valid API key (missing, malformed, unknown or revoked); says nothing about the resource.'),
    '403': problem(`The key lacks the \`${scope}\` scope.`),
    '429': problem("The key's rate limit is spent; retry after `Retry-After` seconds."),
  };
}

const keyList = json({ type: 'object', required: ['items'], properties: { items: { type: 'array', items: ref('ApiKey') } } });
const createdKey = json({
  allOf: [ref('ApiKey'), { type: 'object', required: ['key'], properties: { key: { type: 'string', description: 'The secret: shown only in this answer.' } } }],
});

/** The OpenAPI 3.1 document, generated from the same zod schemas that validate requests. */
export function openApiDocument(): object {
  return {
    openapi: '3.1.0',
    info: {
      title: 'Conveyor',
      version: '1',
      description:
        'Asynchronous task service: submit a task, a worker runs it, read its result. Each task type has its own payload schema (`<type>Payload`, or `JsonValue` for any JSON). Every request carries an API key (`Authorization: Bearer cvy_…`); a key acts for one tenant and sees only its tasks.',
    },
    paths: {
      [TASKS_PATH]: {
        post: {
          summary: 'Submit a task',
          operationId: 'submitTask',
          parameters: [
            {
              name: 'Idempotency-Key',
              in: 'header',
              required: false,
              description: 'Same as the `idempotencyKey` field: a repeated key returns the first task (200).',
              schema: { type: 'string', minLength: 1, maxLength: 200 },
            },
          ],
          requestBody: { required: true, content: json(ref('SubmitTask')) },
          responses: keyed('tasks:write', {
            '201': { description: 'Stored (and published unless RabbitMQ is down or `runAt` is later: then `pending`).', headers: { Location: { schema: { type: 'string' } } }, content: json(ref('Task')) },
            '200': { description: 'The idempotency key was used before: the task it created.', headers: { Location: { schema: { type: 'string' } } }, content: json(ref('Task')) },
            '400': problem('The body is not JSON.'),
            '413': problem('The body is larger than BODY_LIMIT_BYTES (1 MiB by default).'),
            '415': problem('The body is not JSON.'),
            '422': problem('Unknown task type or a payload that does not fit it.'),
            '503': problem('PostgreSQL is unreachable; nothing was stored.'),
          }),
        },
        get: {
          summary: 'List tasks, newest first',
          operationId: 'listTasks',
          parameters: queryParameters(),
          responses: keyed('tasks:read', { '200': { description: 'One page.', content: json(ref('TaskList')) }, '400': problem('Invalid query.') }),
        },
      },
      [`${TASKS_PATH}/batch`]: {
        post: {
          summary: `Submit up to ${BATCH_LIMITS.maxTasks} tasks at once: all stored, or none`,
          operationId: 'submitTasks',
          requestBody: {
            required: true,
            content: json({ allOf: [ref('SubmitBatch'), { type: 'object', properties: { tasks: { type: 'array', items: ref('SubmitTask') } } }] }),
          },
          responses: keyed('tasks:write', {
            '201': {
              description: 'Stored, in the order sent. A task whose idempotencyKey was used before (or earlier in the batch) is the task that key created.',
              content: json({ type: 'object', required: ['items'], properties: { items: { type: 'array', items: ref('Task') } } }),
            },
            '400': problem('The body is not JSON, or an Idempotency-Key header was sent (keys go on each task).'),
            '413': problem('The body is larger than BODY_LIMIT_BYTES (1 MiB by default).'),
            '415': problem('The body is not JSON.'),
            '422': problem('Some task is invalid (each problem is reported under `tasks.<index>`); nothing was stored.'),
            '503': problem('PostgreSQL is unreachable; nothing was stored.'),
          }),
        },
      },
      [`${TASKS_PATH}/{id}`]: {
        parameters: [idParameter],
        get: {
          summary: 'Read a task',
          operationId: 'getTask',
          responses: keyed('tasks:read', { '200': { description: 'The task.', content: json(ref('Task')) }, '400': problem('Malformed id.'), '404': problem('No such task.') }),
        },
        delete: {
          summary: 'Delete a task in any status; a running task is stopped first, a queued one never runs',
          operationId: 'deleteTask',
          responses: keyed('tasks:write', { '204': { description: 'Deleted.' }, '400': problem('Malformed id.'), '404': problem('No such task.') }),
        },
      },
      [`${TASKS_PATH}/{id}/events`]: {
        parameters: [idParameter],
        get: {
          summary: "The task's history: submitted, published, started by which worker, attempts failed with what, retried, finished",
          operationId: 'taskEvents',
          responses: keyed('tasks:read', {
            '200': { description: 'Oldest first.', content: json({ type: 'object', required: ['items'], properties: { items: { type: 'array', items: ref('TaskEvent') } } }) },
            '400': problem('Malformed id.'),
            '404': problem('No such task.'),
          }),
        },
      },
      [`${TASKS_PATH}/{id}/cancel`]: {
        parameters: [idParameter],
        post: {
          summary: 'Cancel a task',
          operationId: 'cancelTask',
          responses: keyed('tasks:write', {
            '200': { description: 'Cancelled (now, or already).', content: json(ref('Task')) },
            '202': { description: 'Running: its worker is stopping it; it ends `cancelled`.', content: json(ref('Task')) },
            '400': problem('Malformed id.'),
            '404': problem('No such task.'),
            '409': problem('The task already completed or failed.'),
          }),
        },
      },
      [`${TASKS_PATH}/{id}/retry`]: {
        parameters: [idParameter],
        post: {
          summary: 'Run a failed or cancelled task again, with a fresh attempt budget',
          operationId: 'retryTask',
          responses: keyed('tasks:write', {
            '202': { description: 'Pending or queued again.', content: json(ref('Task')) },
            '400': problem('Malformed id.'),
            '404': problem('No such task.'),
            '409': problem('The task is not failed or cancelled.'),
          }),
        },
      },
      [KEYS_PATH]: {
        post: {
          summary: 'Create an API key for a tenant (admin)',
          operationId: 'createKey',
          requestBody: { required: true, content: json(ref('CreateApiKey')) },
          responses: keyed('admin', {
            '201': { description: 'Created; the secret `key` is in this answer only.', content: createdKey },
            '422': problem('Invalid tenant, scopes or name.'),
          }),
        },
        get: {
          summary: 'List API keys, of every tenant or one (admin); secrets are never listed',
          operationId: 'listKeys',
          parameters: [{ name: 'tenant', in: 'query', required: false, schema: { type: 'string' } }],
          responses: keyed('admin', { '200': { description: 'Oldest first.', content: keyList }, '400': problem('Invalid query.') }),
        },
      },
      [`${KEYS_PATH}/{id}`]: {
        parameters: [keyIdParameter],
        delete: {
          summary: 'Revoke an API key for good (admin)',
          operationId: 'revokeKey',
          responses: keyed('admin', {
            '200': { description: 'Revoked (now, or before).', content: json(ref('ApiKey')) },
            '400': problem('Malformed id.'),
            '404': problem('No such key.'),
          }),
        },
      },
      '/healthz': { get: { summary: 'Liveness', operationId: 'healthz', security: [], responses: { '200': { description: 'Alive.', content: json(ref('Health')) } } } },
      '/readyz': {
        get: {
          summary: 'Readiness: PostgreSQL and RabbitMQ reachable',
          operationId: 'readyz',
          security: [],
          responses: { '200': { description: 'Ready.', content: json(ref('Health')) }, '503': problem('PostgreSQL or RabbitMQ is down (see `checks`).') },
        },
      },
    },
    security: [{ apiKey: [] }],
    components: {
      schemas: components(),
      securitySchemes: {
        apiKey: {
          type: 'http',
          scheme: 'bearer',
          description: 'An API key (`cvy_…`), created with `npm run keys -- create` or `POST /api/v1/keys`. Not needed when the API runs with AUTH_MODE=none.',
        },
      },
    },
  };
}
