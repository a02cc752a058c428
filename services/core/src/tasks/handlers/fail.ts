import { z } from 'zod';
import { defineTaskType } from '../handler.ts';

export const fail = defineTaskType({
  name: 'fail',
  description: 'Throws an error with the given `message`; useful to exercise failures and retries.',
  payload: z.object({ message: z.string().max(10_000).default('task failed on purpose') }).strict(),
  async run({ message }) {
    throw new Error(message);
  },
});
