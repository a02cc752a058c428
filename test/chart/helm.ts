// Runs the real helm on charts/conveyor and parses what it renders. helm comes from PATH, or is unpacked
// from the npm devDependency by scripts/k8s-tools.ts.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { k8sTools } from '../../scripts/k8s-tools.ts';
import { ROOT } from '../support/processes.ts';

export const CHART = join(ROOT, 'charts', 'conveyor');
/** The Kubernetes version manifests are rendered for and validated against. */
export const KUBE_VERSION = '1.33.0';
export const RELEASE = 'conveyor';
export const NAMESPACE = 'conveyor-test';

/** The values files every render test covers: the chart's ci/ files and the dev loop's. */
export const VALUES_FILES = Object.freeze({
  default: join(CHART, 'ci', 'default-values.yaml'),
  dev: join(CHART, 'ci', 'dev-values.yaml'),
  production: join(CHART, 'ci', 'production-values.yaml'),
  'k8s/dev-values': join(ROOT, 'k8s', 'dev-values.yaml'),
});

export type Manifest = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [field: string]: any;
};

export type RunResult = { code: number | null; stdout: string; stderr: string };

/**
 * Runs a command to its end, collecting its output.
 * @throws when it runs longer than `timeoutMs` (it is then killed).
 */
export function run(command: string, args: readonly string[], timeoutMs = 60_000, env: Record<string, string> = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${command} ${args.join(' ')}: still running after ${timeoutMs} ms\n${stderr}`));
    }, timeoutMs);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

export function helm(args: readonly string[]): Promise<RunResult> {
  return run(k8sTools().helm, args);
}

/** `helm template` of the chart with these values files and `--set` pairs, as it would be installed on 1.33. */
export function template(valuesFiles: readonly string[] = [], set: readonly string[] = []): Promise<RunResult> {
  return helm([
    'template', RELEASE, CHART,
    '--namespace', NAMESPACE,
    '--kube-version', KUBE_VERSION,
    ...valuesFiles.flatMap((file) => ['--values', file]),
    ...set.flatMap((pair) => ['--set', pair]),
  ]);
}

/**
 * The NOTES.txt an install would print, from `helm install --dry-run=client` with no kubeconfig, so that
 * nothing is contacted.
 */
export async function installNotes(valuesFiles: readonly string[] = [], set: readonly string[] = []): Promise<string> {
  const result = await run(
    k8sTools().helm,
    ['install', RELEASE, CHART, '--dry-run=client', '--namespace', NAMESPACE, ...valuesFiles.flatMap((file) => ['--values', file]), ...set.flatMap((pair) => ['--set', pair])],
    60_000,
    { KUBECONFIG: '/dev/null' },
  );
  if (result.code !== 0) throw new Error(`helm install --dry-run=client failed (${result.code}):\n${result.stderr}`);
  const notes = result.stdout.indexOf('NOTES:\n');
  if (notes < 0) throw new Error(`no NOTES in:\n${result.stdout.slice(0, 2000)}`);
  return result.stdout.slice(notes + 'NOTES:\n'.length);
}

/** Parses a multi-document YAML stream into its non-empty documents. */
export function parseManifests(text: string): Manifest[] {
  return parseAllDocuments(text)
    .map((document) => {
      if (document.errors.length > 0) throw new Error(`invalid YAML: ${document.errors.map((error) => error.message).join('; ')}`);
      return document.toJS() as Manifest | null;
    })
    .filter((manifest): manifest is Manifest => manifest !== null);
}

/**
 * Renders the chart and parses the manifests.
 * @throws with helm's error output when the render fails.
 */
export async function render(valuesFiles: readonly string[] = [], set: readonly string[] = []): Promise<Manifest[]> {
  const result = await template(valuesFiles, set);
  if (result.code !== 0) throw new Error(`helm template failed (${result.code}):\n${result.stderr}`);
  return parseManifests(result.stdout);
}

export function readManifests(file: string): Manifest[] {
  return parseManifests(readFileSync(file, 'utf8'));
}

/** The one manifest of this kind and name; fails the test with the names present when there is none. */
export function pick(manifests: readonly Manifest[], kind: string, name: string): Manifest {
  const found = manifests.find((manifest) => manifest.kind === kind && manifest.metadata.name === name);
  if (!found) {
    const present = manifests.map((manifest) => `${manifest.kind}/${manifest.metadata.name}`).join(', ');
    throw new Error(`no ${kind}/${name} among ${present}`);
  }
  return found;
}

/** The pod spec of a workload (Deployment, StatefulSet) or of a Pod. */
export function podSpecOf(manifest: Manifest): any | null {
  if (manifest.kind === 'Pod') return manifest['spec'];
  if (manifest.kind === 'Deployment' || manifest.kind === 'StatefulSet') return manifest['spec'].template.spec;
  return null;
}
