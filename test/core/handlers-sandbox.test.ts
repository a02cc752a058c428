// Built-in task handlers run whatever payload a tenant submits, so none of them may reach the network or the
// filesystem. Checked two ways: statically (what each handler file imports and mentions, and what those
// imports pull in at run time) and by running every registered handler with the network primitives trapped.
import dgram from 'node:dgram';
import { readdir, readFile } from 'node:fs/promises';
import net from 'node:net';
import { dirname, join, relative, resolve } from 'node:path';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { TaskContext, TaskType } from '../../services/core/src/tasks/handler.ts';
import { findTaskType, TASK_TYPES } from '../../services/core/src/tasks/registry.ts';
import { createLogger } from '../../services/core/src/log.ts';

const test = suite('core: built-in handlers cannot reach the network or the filesystem');

const CORE = resolve(import.meta.dirname, '../../services/core/src');
const HANDLERS_DIR = join(CORE, 'tasks/handlers');

/** What a handler file may import: schema building, timers, and the project's handler, model and error types. */
const ALLOWED_PACKAGES = new Set(['zod', 'node:timers/promises']);
const ALLOWED_PROJECT_FILES = new Set([join(CORE, 'tasks/handler.ts'), join(CORE, 'tasks/model.ts'), join(CORE, 'errors.ts')]);

/**
 * Words a handler's source must not contain: ways to the network (fetch, sockets), to Node's modules without an
 * import (`process.getBuiltinModule`, `require`), to the global object, or to code built from strings.
 */
const FORBIDDEN_WORDS: [string, RegExp][] = [
  ['fetch', /\bfetch\b/],
  ['process', /\bprocess\b/],
  ['require(', /\brequire\s*\(/],
  ['globalThis', /\bglobalThis\b/],
  ['global', /\bglobal\b/],
  ['eval', /\beval\b/],
  ['Function(', /\bFunction\s*\(/],
  ['constructor', /\bconstructor\b/],
  ['WebSocket', /\bWebSocket\b/],
  ['XMLHttpRequest', /\bXMLHttpRequest\b/],
  ['EventSource', /\bEventSource\b/],
  ['import.meta', /\bimport\s*\.\s*meta\b/],
];

type ModuleImport = { specifier: string; typeOnly: boolean };

/**
 * The source with comments blanked out, strings, templates and regular expressions kept as they are, so that a
 * comment cannot hide an import from the patterns below and `//` inside a string is not taken for a comment.
 */
function withoutComments(source: string): string {
  let out = '';
  let i = 0;
  // The brace depth outside each `${` still open inside a template literal, and the depth inside the current one.
  const templates: number[] = [];
  let braces = 0;
  let lastSignificant = '';
  const copyFrom = (start: number) => {
    out += source.slice(start, i);
    lastSignificant = 'x';
  };
  const skipQuoted = (quote: string) => {
    while (i < source.length && source[i] !== quote && source[i] !== '\n') i += source[i] === '\\' ? 2 : 1;
    i++;
  };
  // Template text up to its closing backtick, or up to a `${`, whose code is then scanned as any other.
  const skipTemplateText = () => {
    while (i < source.length && source[i] !== '`') {
      if (source[i] === '\\') i += 2;
      else if (source[i] === '$' && source[i + 1] === '{') {
        i += 2;
        templates.push(braces);
        braces = 0;
        return;
      } else i++;
    }
    i++;
  };
  // A regular expression literal, up to its closing slash (not one inside a character class).
  const skipRegex = () => {
    let inClass = false;
    while (i < source.length && source[i] !== '\n' && (inClass || source[i] !== '/')) {
      if (source[i] === '\\') i++;
      else if (source[i] === '[') inClass = true;
      else if (source[i] === ']') inClass = false;
      i++;
    }
    i++;
  };
  // A slash starts a regular expression where a value is expected (a heuristic; `if (x) /re/` is taken for division).
  const regexMayStart = () => lastSignificant === '' || /[(,=:[!&|?{};+\-*%<>~^]/.test(lastSignificant) || /\b(return|typeof|case|in|of)$/.test(out.trimEnd());
  while (i < source.length) {
    const char = source[i] as string;
    const start = i;
    if (char === '/' && source[i + 1] === '/') {
      while (i < source.length && source[i] !== '\n') i++;
      out += ' ';
    } else if (char === '/' && source[i + 1] === '*') {
      const end = source.indexOf('*/', i + 2);
      i = end === -1 ? source.length : end + 2;
      out += ' ';
    } else if (char === '/' && regexMayStart()) {
      i++;
      skipRegex();
      copyFrom(start);
    } else if (char === "'" || char === '"') {
      i++;
      skipQuoted(char);
      copyFrom(start);
    } else if (char === '`' || (char === '}' && braces === 0 && templates.length > 0)) {
      // A template starts, or a `${…}` ends and its template goes on.
      if (char === '}') braces = templates.pop() as number;
      i++;
      skipTemplateText();
      copyFrom(start);
    } else {
      if (char === '{') braces++;
      if (char === '}') braces--;
      if (!/\s/.test(char)) lastSignificant = char;
      out += char;
      i++;
    }
  }
  return out;
}

// Named groups, so that the quote's back-reference cannot pick up another group of the pattern it is part of.
const QUOTED = String.raw`(?<quote>['"])(?<specifier>[^'"\n]*)\k<quote>`;
const NAME = String.raw`[\w$]+`;
const IMPORT_CLAUSE = String.raw`(?:${NAME}\s*(?:,\s*)?)?(?:\*\s*as\s+${NAME}|\{[^{}]*\})?`;
const STATIC_IMPORT = new RegExp(String.raw`\bimport\s+(?<type>type\s+)?${IMPORT_CLAUSE}\s*from\s*${QUOTED}`, 'g');
const SIDE_EFFECT_IMPORT = new RegExp(String.raw`\bimport\s*${QUOTED}`, 'g');
const RE_EXPORT = new RegExp(String.raw`\bexport\s+(?<type>type\s+)?(?:\*(?:\s*as\s+${NAME})?|\{[^{}]*\})\s*from\s*${QUOTED}`, 'g');
const DYNAMIC_IMPORT = /\bimport\s*\(/g;
const LITERAL_ARGUMENT = /^\s*(['"`])([^'"`\n$]*)\1\s*[,)]/;

/**
 * Every module a source imports: static imports and re-exports (`typeOnly` for `import type`/`export type`,
 * which the type stripper erases), side-effect imports, and dynamic `import()` (`<computed>` when the
 * argument is not a plain string). Fails closed: an `import` keyword or a `from '…'` that none of the patterns
 * accounts for is reported as `<unparsed …>`, so an unusual form cannot slip through unchecked.
 */
function moduleImports(source: string): ModuleImport[] {
  const code = withoutComments(source);
  const found: ModuleImport[] = [];
  const covered: [number, number][] = [];
  const claim = (start: number, end: number) => covered.push([start, end]);
  for (const match of code.matchAll(STATIC_IMPORT)) {
    found.push({ specifier: match.groups?.['specifier'] as string, typeOnly: match.groups?.['type'] !== undefined });
    claim(match.index, match.index + match[0].length);
  }
  for (const match of code.matchAll(SIDE_EFFECT_IMPORT)) {
    found.push({ specifier: match.groups?.['specifier'] as string, typeOnly: false });
    claim(match.index, match.index + match[0].length);
  }
  for (const match of code.matchAll(RE_EXPORT)) {
    found.push({ specifier: match.groups?.['specifier'] as string, typeOnly: match.groups?.['type'] !== undefined });
    claim(match.index, match.index + match[0].length);
  }
  for (const match of code.matchAll(DYNAMIC_IMPORT)) {
    const literal = LITERAL_ARGUMENT.exec(code.slice(match.index + match[0].length));
    found.push({ specifier: literal ? (literal[2] as string) : '<computed>', typeOnly: false });
    claim(match.index, match.index + match[0].length);
  }
  const isCovered = (at: number) => covered.some(([start, end]) => at >= start && at < end);
  for (const match of code.matchAll(/\bimport\b|\bfrom\s*['"]/g)) {
    if (!isCovered(match.index)) found.push({ specifier: `<unparsed: ${code.slice(match.index, match.index + 60).trim()}>`, typeOnly: false });
  }
  return found;
}

/** Where a relative specifier points; packages and Node modules are returned as they are. */
function resolveSpecifier(fromFile: string, specifier: string): string {
  return specifier.startsWith('.') ? resolve(dirname(fromFile), specifier) : specifier;
}

/** Why an import of a handler file is not allowed, or null. */
function directImportProblem(fromFile: string, specifier: string): string | null {
  const target = resolveSpecifier(fromFile, specifier);
  if (specifier.startsWith('.')) return ALLOWED_PROJECT_FILES.has(target) ? null : `imports ${specifier} (not an allowed project module)`;
  return ALLOWED_PACKAGES.has(target) ? null : `imports ${specifier}`;
}

function forbiddenWords(source: string): string[] {
  return FORBIDDEN_WORDS.filter(([, pattern]) => pattern.test(source)).map(([word]) => word);
}

/** Every problem in a handler's source: imports outside the allowlist and forbidden words. */
function handlerProblems(file: string, source: string): string[] {
  const imports = moduleImports(source).map(({ specifier }) => directImportProblem(file, specifier));
  const words = forbiddenWords(source).map((word) => `mentions ${word}`);
  return [...imports.filter((problem): problem is string => problem !== null), ...words];
}

/**
 * The packages and Node modules a file loads at run time, following project imports (type-only imports are
 * erased, so they load nothing).
 */
async function runtimePackages(entry: string): Promise<Map<string, string>> {
  const packages = new Map<string, string>();
  const seen = new Set<string>();
  const pending = [entry];
  while (pending.length > 0) {
    const file = pending.pop() as string;
    if (seen.has(file)) continue;
    seen.add(file);
    for (const { specifier, typeOnly } of moduleImports(await readFile(file, 'utf8'))) {
      if (typeOnly) continue;
      if (specifier.startsWith('.')) pending.push(resolveSpecifier(file, specifier));
      else packages.set(specifier, relative(CORE, file));
    }
  }
  return packages;
}

async function handlerFiles(): Promise<string[]> {
  const entries = await readdir(HANDLERS_DIR, { withFileTypes: true, recursive: true });
  return entries
    .filter((entry) => entry.isFile())
    .map((entry) => join(entry.parentPath, entry.name))
    .sort();
}

const silentLog = createLogger({ service: 'test', level: 'silent' });

const isTaskType = (value: unknown): value is TaskType =>
  typeof value === 'object' && value !== null && typeof (value as TaskType).name === 'string' && typeof (value as TaskType).run === 'function';

// ---- the parser itself, on synthetic sources ----

test('the import parser finds every form of import, and a comment cannot hide one', () => {
  const source = [
    `import { setTimeout } from 'node:timers/promises';`,
    `import type { z } from "zod";`,
    `import {\n  readFile,\n  type Stats,\n} from 'node:fs/promises';`,
    `import * as net from 'node:net';`,
    `import http, { request } from 'node:http';`,
    `import /* sneaky */ https from 'node:https';`,
    `import 'node:dgram';`,
    `export * from 'node:dns';`,
    `export { spawn } from 'node:child_process';`,
    `export type { Worker } from 'node:worker_threads';`,
    `const url = 'http://example.com/a//b'; import pg from 'pg';`,
    `const load = () => import('undici');`,
    `const load2 = async (name: string) => import(name);`,
    `const pattern = /["'\\/]/g; import amqplib from 'amqplib';`,
    `const text = \`\${'x'} // not a comment\`; import { sql } from 'slonik';`,
    "const nestedTemplate = `a${`b${'/*'}`}`; import vm from 'node:vm'; const after = '*/';",
    `// import fs from 'node:fs'  (commented out: not an import)`,
  ].join('\n');
  assert.equal(moduleImports(source), [
    { specifier: 'node:timers/promises', typeOnly: false },
    { specifier: 'zod', typeOnly: true },
    { specifier: 'node:fs/promises', typeOnly: false },
    { specifier: 'node:net', typeOnly: false },
    { specifier: 'node:http', typeOnly: false },
    { specifier: 'node:https', typeOnly: false },
    { specifier: 'pg', typeOnly: false },
    { specifier: 'amqplib', typeOnly: false },
    { specifier: 'slonik', typeOnly: false },
    { specifier: 'node:vm', typeOnly: false },
    { specifier: 'node:dgram', typeOnly: false },
    { specifier: 'node:dns', typeOnly: false },
    { specifier: 'node:child_process', typeOnly: false },
    { specifier: 'node:worker_threads', typeOnly: true },
    { specifier: 'undici', typeOnly: false },
    { specifier: '<computed>', typeOnly: false },
  ]);
});

test('an import form the parser does not know is reported, not ignored', () => {
  const odd = moduleImports(`import fs = require('node:fs');\nimport json from './data.json' with { type: 'json' };`);
  assert.ok(odd.some((found) => found.specifier.startsWith('<unparsed')), JSON.stringify(odd));
  assert.ok(odd.some((found) => found.specifier === './data.json'), JSON.stringify(odd));
});

test('a handler that imports node:fs/promises (or mentions fetch, process, …) is refused', async () => {
  const file = join(HANDLERS_DIR, 'echo.ts');
  const original = await readFile(file, 'utf8');
  assert.equal(handlerProblems(file, original), [], 'the real echo handler passes');
  const withFs = `import { readFile } from 'node:fs/promises';\n${original}`;
  assert.equal(handlerProblems(file, withFs), ['imports node:fs/promises']);
  assert.equal(handlerProblems(file, original.replace("from '../model.ts'", "from '../../db/pool.ts'")), [
    'imports ../../db/pool.ts (not an allowed project module)',
  ]);
  assert.equal(handlerProblems(file, `${original}\nconst x = await import('node:net');`), ['imports node:net']);
  for (const [word] of FORBIDDEN_WORDS) {
    const body = word === 'import.meta' ? 'import.meta.dirname' : word.replace('(', '("x")');
    const problems = handlerProblems(file, original.replace('return payload;', `${body}; return payload;`));
    assert.ok(problems.includes(`mentions ${word}`), `${word}: ${JSON.stringify(problems)}`);
  }
});

// ---- the real handlers ----

test('handlers/ holds only TypeScript files, and each registered type is exported by one of them', async () => {
  const files = await handlerFiles();
  assert.ok(files.length >= TASK_TYPES.size, `${files.length} files for ${TASK_TYPES.size} types`);
  for (const file of files) assert.ok(file.endsWith('.ts'), `${relative(CORE, file)} is not a .ts file`);
  const exported = new Set<unknown>();
  for (const file of files) {
    const module = (await import(file)) as Record<string, unknown>;
    const types = Object.values(module).filter(isTaskType);
    assert.ok(types.length > 0, `${relative(CORE, file)} exports no task type`);
    for (const type of types) exported.add(type);
  }
  // The registry runs exactly these objects, so checking the files checks the code that runs.
  for (const [name, type] of TASK_TYPES) assert.ok(exported.has(type), `registered type '${name}' is not defined in handlers/`);
});

test('every handler imports only zod, node:timers/promises and the handler, model and error modules, and mentions no escape hatch', async () => {
  const problems: string[] = [];
  for (const file of await handlerFiles()) {
    const source = await readFile(file, 'utf8');
    problems.push(...handlerProblems(file, source).map((problem) => `${relative(CORE, file)} ${problem}`));
    assert.ok(moduleImports(source).length > 0, `${relative(CORE, file)}: no imports found, so the parser missed them`);
  }
  assert.equal(problems, []);
});

test('nothing a handler imports loads a package or Node module beyond zod and node:timers/promises', async () => {
  const problems: string[] = [];
  for (const file of await handlerFiles()) {
    for (const [name, from] of await runtimePackages(file)) {
      if (!ALLOWED_PACKAGES.has(name)) problems.push(`${relative(CORE, file)} loads ${name} (through ${from})`);
    }
  }
  assert.equal(problems, []);
});

// ---- at run time ----

type Trap = { calls: string[]; restore: () => void };

/** Replaces fetch, TCP connect and UDP send with spies that record the call and throw. */
function trapNetwork(): Trap {
  const calls: string[] = [];
  const originalFetch = globalThis.fetch;
  const originalConnect = net.Socket.prototype.connect;
  const originalSend = dgram.Socket.prototype.send;
  globalThis.fetch = (async (input: unknown) => {
    calls.push(`fetch ${String(input)}`);
    throw new Error('network access from a task handler');
  }) as typeof fetch;
  net.Socket.prototype.connect = function connect(...args: unknown[]) {
    calls.push(`net connect ${JSON.stringify(args[0])}`);
    throw new Error('network access from a task handler');
  } as typeof originalConnect;
  dgram.Socket.prototype.send = function send() {
    calls.push('udp send');
    throw new Error('network access from a task handler');
  } as typeof originalSend;
  return {
    calls,
    restore: () => {
      globalThis.fetch = originalFetch;
      net.Socket.prototype.connect = originalConnect;
      dgram.Socket.prototype.send = originalSend;
    },
  };
}

/** A valid payload for each built-in type, and whether its handler fails on purpose. A new type needs a line here. */
const SAMPLES: Record<string, { payload: unknown; throws?: RegExp }> = {
  echo: { payload: { hello: 'world', list: [1, 2] } },
  sleep: { payload: { ms: 5 } },
  fail: { payload: { message: 'on purpose' }, throws: /on purpose/ },
};

function contextFor(type: string, signal: AbortSignal): TaskContext {
  return { taskId: '01900000-0000-7000-8000-000000000000', type, attempt: 1, maxAttempts: 1, signal, log: silentLog };
}

/** Runs `work` with the network trapped, lets anything it scheduled run, and returns what was trapped. */
async function trapped(work: () => Promise<void>): Promise<string[]> {
  const trap = trapNetwork();
  try {
    await work();
    await nextTurn();
  } finally {
    trap.restore();
  }
  return trap.calls;
}

test('the network trap catches fetch, TCP and UDP, and puts them back (so a clean run below means something)', async () => {
  const originals = [globalThis.fetch, net.Socket.prototype.connect, dgram.Socket.prototype.send];
  const udp = dgram.createSocket('udp4');
  try {
    const calls = await trapped(async () => {
      await fetch('http://127.0.0.1:9/').catch(() => undefined);
      // The spies throw; that they were called is what counts.
      assert.throws(() => net.connect(9, '127.0.0.1'), /network access/);
      assert.throws(() => udp.send('x', 9, '127.0.0.1'), /network access/);
    });
    assert.equal(calls.map((call) => call.split(' ')[0]), ['fetch', 'net', 'udp']);
  } finally {
    udp.close();
  }
  assert.equal([globalThis.fetch, net.Socket.prototype.connect, dgram.Socket.prototype.send], originals, 'restored');
});

test('every registered handler runs with a valid payload without touching the network', async () => {
  assert.equal(Object.keys(SAMPLES).sort(), [...TASK_TYPES.keys()].sort(), 'a sample payload for each registered type');
  for (const name of TASK_TYPES.keys()) {
    const type = findTaskType(name);
    const sample = SAMPLES[name];
    assert.ok(type && sample, name);
    const controller = new AbortController();
    let outcome: { result?: unknown; error?: unknown } = {};
    const calls = await trapped(async () => {
      try {
        outcome = { result: await type.run(type.payload.parse(sample.payload), contextFor(name, controller.signal)) };
      } catch (error) {
        outcome = { error };
      }
    });
    assert.equal(calls, [], `${name} used the network`);
    if (sample.throws) {
      assert.instance(outcome.error, Error, `${name} fails on purpose`);
      assert.match((outcome.error as Error).message, sample.throws);
    } else {
      assert.is(outcome.error, undefined, `${name}: ${String(outcome.error)}`);
      assert.ok('result' in outcome, `${name} returned`);
    }
  }
});

test.run();
