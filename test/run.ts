// `npm test`: runs every `*.test.ts` under test/ (or those whose path contains an argument) with uvu,
// then prints the totals and, last, `N passed, N failed`.
import { readdir } from 'node:fs/promises';
import { join, relative } from 'node:path';

type SuiteRun = () => Promise<[errors: string | true, passed: number, skipped: number, total: number]>;
type UvuGlobals = { UVU_DEFER: number; UVU_QUEUE: [string, ...SuiteRun[]][]; UVU_INDEX: number };

const testDir = import.meta.dirname;
const filters = process.argv.slice(2);

async function findTests(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true });
  return entries
    .filter((entry) => entry.isFile() && entry.name.endsWith('.test.ts'))
    .map((entry) => join(entry.parentPath, entry.name))
    .filter((file) => filters.length === 0 || filters.some((filter) => relative(testDir, file).includes(filter)))
    .sort();
}

// uvu's own runner queues suites per file behind UVU_DEFER and runs them in order; so do we, keeping the counts.
const uvu = globalThis as unknown as UvuGlobals;
uvu.UVU_DEFER = 1;
uvu.UVU_QUEUE = [];
await import('uvu');

const files = await findTests(testDir);
for (const [index, file] of files.entries()) {
  uvu.UVU_INDEX = index;
  uvu.UVU_QUEUE.push([relative(testDir, file)]);
  await import(file);
}

let passed = 0;
let failed = 0;
const started = performance.now();
for (const [name, ...suites] of uvu.UVU_QUEUE) {
  process.stdout.write(`\n${name}\n`);
  for (const run of suites) {
    const [errors, ok, skipped, total] = await run();
    passed += ok;
    failed += total - ok - skipped;
    if (errors !== true) process.stdout.write(`\n${errors}\n`);
  }
}
const seconds = ((performance.now() - started) / 1000).toFixed(1);
process.stdout.write(`\n${files.length} files in ${seconds} s\n${passed} passed, ${failed} failed\n`);
process.exit(failed > 0 || passed === 0 ? 1 : 0);
