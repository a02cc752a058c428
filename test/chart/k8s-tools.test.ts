import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { findOnPath, k8sTools } from '../../scripts/k8s-tools.ts';
import { ROOT } from '../support/processes.ts';
import { run } from './helm.ts';

const test = suite('chart: scripts/k8s-tools.ts');

let cacheDir = '';

test.before(() => {
  cacheDir = mkdtempSync(join(tmpdir(), 'conveyor-k8s-tools-'));
});

test.after(() => {
  rmSync(cacheDir, { recursive: true, force: true });
});

test('k8sTools() gives a helm and a kubectl that run', async () => {
  const tools = k8sTools();
  const helm = await run(tools.helm, ['version', '--short']);
  assert.is(helm.code, 0, helm.stderr);
  assert.match(helm.stdout, /^v\d+\.\d+\.\d+/);
  const kubectl = await run(tools.kubectl, ['version', '--client']);
  assert.is(kubectl.code, 0, kubectl.stderr);
  assert.match(kubectl.stdout, /Client Version: v1\.\d+/);
});

test('a tool on PATH wins; a missing one is not found', () => {
  assert.is(findOnPath('node', join(ROOT, 'node_modules', '.bin')), join(ROOT, 'node_modules', '.bin', 'node'));
  assert.is(findOnPath('helm', '/nonexistent'), null);
});

test('two processes unpacking into the same empty cache at once both get complete, working binaries', async () => {
  // Each process imports the script and unpacks into the same folder; the slower one must not see (or leave) a partial file.
  const script = `import { unpackK8sTools } from ${JSON.stringify(join(ROOT, 'scripts', 'k8s-tools.ts'))};
    process.stdout.write(JSON.stringify(unpackK8sTools(${JSON.stringify(cacheDir)})));`;
  const [first, second] = await Promise.all([0, 1].map(() => run(process.execPath, ['--input-type=module', '-e', script], 120_000)));
  assert.is(first?.code, 0, first?.stderr);
  assert.is(second?.code, 0, second?.stderr);
  const paths = JSON.parse(first?.stdout ?? '{}') as { helm: string; kubectl: string };
  assert.equal(JSON.parse(second?.stdout ?? '{}'), paths);
  const helm = await run(paths.helm, ['version', '--short']);
  assert.is(helm.code, 0, helm.stderr);
  const kubectl = await run(paths.kubectl, ['version', '--client']);
  assert.is(kubectl.code, 0, kubectl.stderr);
  assert.match(kubectl.stdout, /Client Version: v1\.33\./);
  const [versionDir] = readdirSync(cacheDir);
  assert.equal(readdirSync(join(cacheDir, versionDir as string)).sort(), ['helm', 'kubectl'], 'partial files left behind');
});

test('unpacking again reuses the cache instead of writing the binaries anew', async () => {
  const [versionDir] = readdirSync(cacheDir);
  const helm = join(cacheDir, versionDir as string, 'helm');
  const before = statSync(helm).ino;
  const script = `import { unpackK8sTools } from ${JSON.stringify(join(ROOT, 'scripts', 'k8s-tools.ts'))};
    unpackK8sTools(${JSON.stringify(cacheDir)});`;
  const result = await run(process.execPath, ['--input-type=module', '-e', script]);
  assert.is(result.code, 0, result.stderr);
  assert.is(statSync(helm).ino, before, 'helm was replaced');
});

test.run();
