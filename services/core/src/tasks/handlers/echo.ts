import { defineTaskType } from '../handler.ts';
import { JsonValueSchema } from '../model.ts';

export const echo = defineTaskType({
  name: 'echo',
  description: 'Returns its payload unchanged.',
  payload: JsonValueSchema,
  async run(payload) {
    return payload;
  },
});
