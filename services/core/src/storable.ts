import { z } from 'zod';

/**
 * What PostgreSQL can store. Text columns refuse NUL characters and jsonb refuses `\u0000` and lone UTF-16
 * surrogates, and a deeply nested document exhausts the serializer's stack; checking for these up front turns
 * what would be a failed statement into a clear 422.
 */
export const STORABLE_LIMITS = Object.freeze({ maxDepth: 32 });

/** Why a string cannot be stored, or null when it can. */
function textProblem(text: string): string | null {
  if (text.includes('\u0000')) return 'must not contain NUL characters';
  if (!text.isWellFormed()) return 'must be well-formed Unicode (no lone surrogates)';
  return null;
}

/** A string PostgreSQL can store as text. */
export function storableText(schema: z.ZodString = z.string()) {
  return schema.superRefine((text, ctx) => {
    const problem = textProblem(text);
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  });
}

type Issue = { path: PropertyKey[]; message: string };

/**
 * The problems that keep a JSON value out of a jsonb column: nesting deeper than {@link STORABLE_LIMITS.maxDepth},
 * unstorable strings or keys, and numbers JSON cannot carry (a huge literal parses as Infinity). Walks the value
 * with an explicit stack, so no input can exhaust the call stack; reports the first few problems.
 */
export function jsonProblems(value: unknown, limit = 5): Issue[] {
  const issues: Issue[] = [];
  const stack: { value: unknown; path: PropertyKey[] }[] = [{ value, path: [] }];
  while (stack.length > 0 && issues.length < limit) {
    const { value: current, path } = stack.pop() as { value: unknown; path: PropertyKey[] };
    if (typeof current === 'string') {
      const problem = textProblem(current);
      if (problem) issues.push({ path, message: `string ${problem}` });
    } else if (typeof current === 'number') {
      if (!Number.isFinite(current)) issues.push({ path, message: 'number is too large to store' });
    } else if (current !== null && typeof current === 'object') {
      if (path.length >= STORABLE_LIMITS.maxDepth) {
        issues.push({ path, message: `nesting is deeper than ${STORABLE_LIMITS.maxDepth} levels` });
        continue;
      }
      // Pushed last to first, so that problems come out in document order.
      const entries = Object.entries(current);
      for (let i = entries.length - 1; i >= 0; i--) {
        const [key, child] = entries[i] as [string, unknown];
        stack.push({ value: child, path: [...path, Array.isArray(current) ? Number(key) : key] });
      }
      for (const [key] of entries) {
        const problem = textProblem(key);
        if (problem && issues.length < limit) issues.push({ path: [...path, key], message: `key ${problem}` });
      }
    }
  }
  return issues;
}

/** Any JSON value PostgreSQL can store in a jsonb column. */
export const StorableJsonSchema = z.unknown().superRefine((value, ctx) => {
  for (const issue of jsonProblems(value)) ctx.addIssue({ code: 'custom', path: issue.path, message: issue.message });
});
