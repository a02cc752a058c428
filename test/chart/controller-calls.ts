// The Kubernetes permissions the controller's code needs, derived from its sources rather than listed by hand:
// 1. every call of a @kubernetes/client-node API method in services/controller/src is found, with the API class
//    of its receiver (`kube.core` → CoreV1Api, from the receiver's declared type) and, for custom objects, the
//    plural it acts on (a literal, or the CRD plurals that the enclosing function's callers pass in);
// 2. what each method asks the API server for is not guessed from its name: the method is called against the
//    fake API server, whose request log names the verb, resource and subresource as kube-apiserver authorizes them;
// 3. `makeInformer(config, path, list)` lists through `list` and then watches the same resource.
// Anything the analysis cannot place (an unknown receiver, a plural it cannot resolve, a watch made some other
// way) throws, so that a new kind of call fails the test instead of going unseen.
import * as k8s from '@kubernetes/client-node';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { FakeApiServer } from '../support/fake-apiserver/index.ts';
import { ROOT } from '../support/processes.ts';
import { CHART, readManifests } from './helm.ts';

export const CONTROLLER_SOURCES = join(ROOT, 'services', 'controller', 'src');

/** One API call site: where it is, the client-node class and method, and the custom resource plural if any. */
export type ApiCall = { where: string; api: string; method: string; plural?: string; informer: boolean };

type Source = { file: string; text: string };
type CustomResource = { group: string; version: string; plural: string };

const API_CLASSES = Object.entries(k8s as unknown as Record<string, unknown>)
  .filter(([name, value]) => name.endsWith('Api') && typeof value === 'function' && name !== 'KubernetesObjectApi')
  .map(([name, value]) => [name, value as new (...args: never[]) => Record<string, unknown>] as const);
const API_METHOD = /^(read|list|create|replace|patch|delete|deleteCollection|connect)[A-Z]\w*$/;
const KEYWORDS = new Set(['if', 'for', 'while', 'switch', 'catch', 'return', 'function', 'await', 'typeof', 'new']);
/** Ways of talking to the API server that the analysis does not follow; finding one fails it. */
const UNSUPPORTED = [/\bnew\s+(Watch|ListWatch)\b/, /\bKubernetesObjectApi\b/, /\.makeApiClient\(\s*KubernetesObjectApi/];

/** Blanks comments (keeping offsets and newlines), so that an apostrophe in a comment cannot confuse the scanner. */
export function stripComments(text: string): string {
  let out = '';
  let quote: string | null = null;
  for (let i = 0; i < text.length; i++) {
    const char = text[i] as string;
    if (quote) {
      out += char;
      if (char === '\\') out += text[++i] ?? '';
      else if (char === quote) quote = null;
    } else if (char === '/' && text[i + 1] === '/') {
      while (i < text.length && text[i] !== '\n') (out += ' '), i++;
      out += text[i] ?? '';
    } else if (char === '/' && text[i + 1] === '*') {
      const end = text.indexOf('*/', i + 2);
      const stop = end < 0 ? text.length : end + 2;
      out += text.slice(i, stop).replace(/[^\n]/g, ' ');
      i = stop - 1;
    } else {
      if (char === "'" || char === '"' || char === '`') quote = char;
      out += char;
    }
  }
  return out;
}

/** The text between the parenthesis at `open` and its match. */
function argumentsAt(text: string, open: number): string {
  let depth = 0;
  let quote: string | null = null;
  for (let i = open; i < text.length; i++) {
    const char = text[i];
    if (quote) {
      if (char === '\\') i++;
      else if (char === quote) quote = null;
    } else if (char === "'" || char === '"' || char === '`') quote = char;
    else if (char === '(') depth++;
    else if (char === ')' && --depth === 0) return text.slice(open + 1, i);
  }
  throw new Error(`unbalanced parentheses from offset ${open}`);
}

function lineOf(text: string, index: number): number {
  return text.slice(0, index).split('\n').length;
}

/** Every .ts file under `dir`, comments blanked. */
export function readSources(dir: string): Source[] {
  return readdirSync(dir, { recursive: true })
    .map(String)
    .filter((file) => file.endsWith('.ts'))
    .sort()
    .map((file) => ({ file: join(dir, file), text: stripComments(readFileSync(join(dir, file), 'utf8')) }));
}

/** The client-node classes a receiver name is declared as (`core: CoreV1Api`, `api: config.makeApiClient(CoordinationV1Api)`). */
function declaredClasses(receiver: string, sources: readonly Source[]): Set<string> {
  const declaration = new RegExp(`(?<![\\w$#.])#?${receiver.replace(/[#$]/g, '\\$&')}\\??\\s*:\\s*(?:type\\s+)?(?:[\\w.]+\\.makeApiClient\\(\\s*)?(\\w+Api)\\b`, 'g');
  const found = new Set<string>();
  for (const { text } of sources) for (const match of text.matchAll(declaration)) found.add(match[1] as string);
  return found;
}

type Enclosing = { kind: 'function' | 'method' | 'constructor'; name: string };

/** The function, method or constructor whose body holds `index` (the nearest header before it). */
function enclosingFunction(text: string, index: number): Enclosing {
  const before = text.slice(0, index);
  const headers: { at: number; enclosing: Enclosing }[] = [];
  for (const match of before.matchAll(/\bfunction\s+([\w$]+)\s*[<(]/g)) headers.push({ at: match.index, enclosing: { kind: 'function', name: match[1] as string } });
  for (const match of before.matchAll(/^[ \t]*(?:(?:public|private|protected|static|async|override|readonly)\s+)*(#?[A-Za-z_$][\w$]*)\s*(?:<[^>\n]*>)?\s*\([^\n]*\{[ \t]*$/gm)) {
    const name = match[1] as string;
    if (KEYWORDS.has(name)) continue;
    if (name === 'constructor') {
      const owner = [...before.slice(0, match.index).matchAll(/\bclass\s+([\w$]+)/g)].pop();
      if (owner) headers.push({ at: match.index, enclosing: { kind: 'constructor', name: owner[1] as string } });
    } else headers.push({ at: match.index, enclosing: { kind: 'method', name } });
  }
  const nearest = headers.sort((a, b) => a.at - b.at).pop();
  if (!nearest) throw new Error(`no enclosing function at offset ${index}`);
  return nearest.enclosing;
}

/** The argument texts of every call of `enclosing` in the sources. */
function callersOf(enclosing: Enclosing, sources: readonly Source[]): string[] {
  const name = enclosing.name.replace(/[#$]/g, '\\$&');
  const call =
    enclosing.kind === 'constructor' ? new RegExp(`\\bnew\\s+${name}\\s*(?:<[^>()]*>)?\\s*\\(`, 'g')
    : enclosing.kind === 'method' ? new RegExp(`\\.${name}\\s*\\(`, 'g')
    : new RegExp(`(?<![\\w$#.]|function\\s+)${name}\\s*\\(`, 'g');
  return sources.flatMap(({ text }) => [...text.matchAll(call)].map((match) => argumentsAt(text, match.index + match[0].length - 1)));
}

/** The CRD plural(s) a custom-object call acts on. */
function pluralsOf(args: string, source: Source, index: number, sources: readonly Source[], plurals: readonly string[]): string[] {
  const literal = /\bplural\s*:\s*['"`]([^'"`]+)['"`]/.exec(args);
  if (literal) return [literal[1] as string];
  const enclosing = enclosingFunction(source.text, index);
  const passed = callersOf(enclosing, sources).flatMap((callArgs) => plurals.filter((plural) => new RegExp(`['"\`]${plural}['"\`]`).test(callArgs)));
  if (passed.length === 0) {
    throw new Error(`${relative(ROOT, source.file)}:${lineOf(source.text, index)}: cannot tell which resource this call acts on (no literal plural, and the callers of ${enclosing.kind} ${enclosing.name} pass none)`);
  }
  return [...new Set(passed)].sort();
}

/**
 * Every Kubernetes API call in the sources under `dir`.
 * @throws when a call's receiver, API class or resource cannot be determined, or an unsupported client is used.
 */
export function findApiCalls(dir: string, plurals: readonly string[]): ApiCall[] {
  const sources = readSources(dir);
  const calls: ApiCall[] = [];
  for (const source of sources) {
    for (const pattern of UNSUPPORTED) {
      if (pattern.test(source.text)) throw new Error(`${relative(ROOT, source.file)} uses ${pattern.source}, which the analysis does not follow`);
    }
    const informers = [...source.text.matchAll(/\bmakeInformer\s*(?:<[^>()]*>)?\s*\(/g)].map((match) => {
      const open = match.index + match[0].length - 1;
      return { from: open, to: open + argumentsAt(source.text, open).length + 1 };
    });
    for (const match of source.text.matchAll(/([\w$#]+)\s*\??\.\s*([\w$]+)\s*\(/g)) {
      const [, receiver = '', method = ''] = match;
      const owners = API_CLASSES.filter(([, constructor]) => typeof constructor.prototype[method] === 'function').map(([name]) => name);
      if (!API_METHOD.test(method.replace(/WithHttpInfo$/, '')) || owners.length === 0) continue;
      const where = `${relative(ROOT, source.file)}:${lineOf(source.text, match.index)}`;
      const declared = [...declaredClasses(receiver, sources)].filter((name) => owners.includes(name));
      if (declared.length !== 1) throw new Error(`${where}: ${receiver}.${method}: the receiver is declared as ${declared.length === 0 ? 'no client-node API class' : declared.join(' and ')}`);
      const api = declared[0] as string;
      const open = match.index + match[0].length - 1;
      const args = argumentsAt(source.text, open);
      const informer = informers.some(({ from, to }) => open > from && open < to);
      if (api === 'CustomObjectsApi') {
        for (const plural of pluralsOf(args, source, match.index, sources, plurals)) calls.push({ where, api, method, plural, informer });
      } else calls.push({ where, api, method, informer });
    }
    if (informers.length > 0 && !calls.some((call) => call.informer && call.where.startsWith(relative(ROOT, source.file)))) {
      throw new Error(`${relative(ROOT, source.file)}: makeInformer without a client-node list call as its list function`);
    }
  }
  return calls;
}

/** The custom resources the chart's CRDs define, by plural. */
export function chartCustomResources(): Map<string, CustomResource> {
  const crds = readdirSync(join(CHART, 'crds')).flatMap((file) => readManifests(join(CHART, 'crds', file)));
  return new Map(crds.map((crd) => {
    const { group, names, versions } = crd['spec'];
    return [names.plural as string, { group, version: versions.find((version: { served: boolean }) => version.served).name, plural: names.plural }];
  }));
}

/** `group resource[/subresource] verb`, with `core` for the core group: the unit RBAC rules grant. */
export type Grant = string;

/**
 * The grants the calls need, each observed by making the call against the fake API server.
 * @throws when a call sends no request, or one the fake cannot place (then the fake needs the resource).
 */
export async function grantsFor(calls: readonly ApiCall[], resources: ReadonlyMap<string, CustomResource>): Promise<Grant[]> {
  const server = await FakeApiServer.start();
  try {
    const config = server.kubeConfig('rbac-probe');
    const grants = new Set<Grant>();
    for (const call of calls) {
      const constructor = API_CLASSES.find(([name]) => name === call.api)?.[1] as unknown as Parameters<typeof config.makeApiClient>[0];
      const client = config.makeApiClient(constructor) as unknown as Record<string, (params: object) => Promise<unknown>>;
      const custom = call.plural === undefined ? {} : resources.get(call.plural);
      if (!custom) throw new Error(`${call.where}: ${call.plural} is not a resource of the chart's CRDs`);
      server.clearRequests();
      await (client[call.method] as (params: object) => Promise<unknown>).call(client, {
        name: 'rbac-probe',
        namespace: 'rbac-probe',
        body: { metadata: { name: 'rbac-probe' } },
        ...custom,
      }).catch(() => undefined);
      const requests = server.requests();
      if (requests.length !== 1 || !requests[0]?.verb) {
        throw new Error(`${call.where}: ${call.api}.${call.method} sent ${requests.length} requests the fake API server could place (${JSON.stringify(requests)})`);
      }
      const { verb, resource, subresource } = requests[0];
      const [plural, ...group] = resource.split('.');
      const name = `${group.join('.') || 'core'} ${plural}${subresource ? `/${subresource}` : ''}`;
      grants.add(`${name} ${verb}`);
      if (call.informer) {
        if (verb !== 'list') throw new Error(`${call.where}: the list function of an informer calls ${call.method}, which is no list`);
        grants.add(`${name} watch`);
      }
    }
    return [...grants].sort();
  } finally {
    await server.stop();
  }
}

/** Role rules as sorted `group resource verb` grants, so that comparisons ignore how rules are grouped. */
export function grantsOf(rules: readonly { apiGroups: string[]; resources: string[]; verbs: string[]; resourceNames?: string[] }[]): Grant[] {
  return rules
    .flatMap((rule) => {
      if (rule.resourceNames) throw new Error('resourceNames are not expected');
      return rule.apiGroups.flatMap((group) => rule.resources.flatMap((resource) => rule.verbs.map((verb) => `${group || 'core'} ${resource} ${verb}`)));
    })
    .sort();
}
