import { z } from 'zod';
import { defineTaskType } from '../handler.ts';

export const echo = defineTaskType({
  name: 'echo',
  description: 'Returns its payload unchanged.',
  payload: z.json(),
  async run(payload) {
    return payload;
  },
});
