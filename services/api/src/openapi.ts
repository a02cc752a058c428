import { z } from 'zod';
import { BackoffSchema } from '../../core/src/tasks/backoff.ts';
import { JsonValueSchema, TaskErrorSchema, TaskEventSchema, TaskSchema } from '../../core/src/tasks/model.ts';
import { TASK_TYPES } from '../../core/src/tasks/registry.ts';
import { SubmitTaskSchema } from '../../core/src/tasks/submission.ts';
import { ListTasksQuerySchema, ProblemSchema, TaskIdSchema, TaskListSchema, HealthSchema } from './schemas.ts';
import { TASKS_PATH } from './routes/tasks.ts';

const ref = (id: string) => ({ $ref: `#/components/schemas/${id}` });
const json = (schema: object) => ({ 'application/json': { schema } });
const problem = (description: string) => ({ description, content: { 'application/problem+json': { schema: ref('Problem') } } });

/** JSON Schema (2020-12, as OpenAPI 3.1 uses) of every named schema, with references between them. */
function components(): Record<string, unknown> {
  const registry = z.registry<{ id: string; description?: string }>();
  for (const schema of [JsonValueSchema, TaskErrorSchema, BackoffSchema, TaskSchema, TaskEventSchema, SubmitTaskSchema, TaskListSchema, ProblemSchema, HealthSchema]) {
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

/** The OpenAPI 3.1 document, generated from the same zod schemas that validate requests. */
export function openApiDocument(): object {
  return {
    openapi: '3.1.0',
    info: {
      title: 'Conveyor',
      version: '1',
      description:
        'Asynchronous task service: submit a task, a worker runs it, read its result. Each task type has its own payload schema (`<type>Payload`, or `JsonValue` for any JSON).',
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
          responses: {
            '201': { description: 'Stored (and published unless RabbitMQ is down or `runAt` is later: then `pending`).', headers: { Location: { schema: { type: 'string' } } }, content: json(ref('Task')) },
            '200': { description: 'The idempotency key was used before: the task it created.', headers: { Location: { schema: { type: 'string' } } }, content: json(ref('Task')) },
            '400': problem('The body is not JSON.'),
            '413': problem('The body is larger than 1 MiB.'),
            '415': problem('The body is not JSON.'),
            '422': problem('Unknown task type or a payload that does not fit it.'),
            '503': problem('PostgreSQL is unreachable; nothing was stored.'),
          },
        },
        get: {
          summary: 'List tasks, newest first',
          operationId: 'listTasks',
          parameters: queryParameters(),
          responses: { '200': { description: 'One page.', content: json(ref('TaskList')) }, '400': problem('Invalid query.') },
        },
      },
      [`${TASKS_PATH}/{id}`]: {
        parameters: [idParameter],
        get: {
          summary: 'Read a task',
          operationId: 'getTask',
          responses: { '200': { description: 'The task.', content: json(ref('Task')) }, '400': problem('Malformed id.'), '404': problem('No such task.') },
        },
        delete: {
          summary: 'Delete a task in any status; a running task is stopped first, a queued one never runs',
          operationId: 'deleteTask',
          responses: { '204': { description: 'Deleted.' }, '400': problem('Malformed id.'), '404': problem('No such task.') },
        },
      },
      [`${TASKS_PATH}/{id}/events`]: {
        parameters: [idParameter],
        get: {
          summary: "The task's history: submitted, published, started by which worker, attempts failed with what, retried, finished",
          operationId: 'taskEvents',
          responses: {
            '200': { description: 'Oldest first.', content: json({ type: 'object', required: ['items'], properties: { items: { type: 'array', items: ref('TaskEvent') } } }) },
            '400': problem('Malformed id.'),
            '404': problem('No such task.'),
          },
        },
      },
      [`${TASKS_PATH}/{id}/cancel`]: {
        parameters: [idParameter],
        post: {
          summary: 'Cancel a task',
          operationId: 'cancelTask',
          responses: {
            '200': { description: 'Cancelled (now, or already).', content: json(ref('Task')) },
            '202': { description: 'Running: its worker is stopping it; it ends `cancelled`.', content: json(ref('Task')) },
            '400': problem('Malformed id.'),
            '404': problem('No such task.'),
            '409': problem('The task already completed or failed.'),
          },
        },
      },
      [`${TASKS_PATH}/{id}/retry`]: {
        parameters: [idParameter],
        post: {
          summary: 'Run a failed or cancelled task again, with a fresh attempt budget',
          operationId: 'retryTask',
          responses: {
            '202': { description: 'Pending or queued again.', content: json(ref('Task')) },
            '400': problem('Malformed id.'),
            '404': problem('No such task.'),
            '409': problem('The task is not failed or cancelled.'),
          },
        },
      },
      '/healthz': { get: { summary: 'Liveness', operationId: 'healthz', responses: { '200': { description: 'Alive.', content: json(ref('Health')) } } } },
      '/readyz': {
        get: {
          summary: 'Readiness: PostgreSQL and RabbitMQ reachable',
          operationId: 'readyz',
          responses: { '200': { description: 'Ready.', content: json(ref('Health')) }, '503': problem('PostgreSQL or RabbitMQ is down (see `checks`).') },
        },
      },
    },
    components: { schemas: components() },
  };
}
