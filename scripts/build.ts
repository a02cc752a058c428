// `npm run build`: compiles services/ and scripts/ to JavaScript in dist/ (what the images run), with
// relative `.ts` imports rewritten to `.js`, and copies the SQL migrations beside the compiled migrate.js,
// which reads them from its own folder.
import { spawnSync } from 'node:child_process';
import { cpSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const root = join(import.meta.dirname, '..');
const dist = join(root, 'dist');
const migrations = join('services', 'core', 'src', 'db', 'migrations');
const tsc = join(dirname(createRequire(import.meta.url).resolve('typescript/package.json')), 'bin', 'tsc');

rmSync(dist, { recursive: true, force: true });
const { status, error } = spawnSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json')], { cwd: root, stdio: 'inherit' });
if (error) throw error;
if (status !== 0) {
  process.stderr.write(`build: tsc exited with ${status}\n`);
  process.exit(1);
}
cpSync(join(root, migrations), join(dist, migrations), { recursive: true, filter: (path) => path.endsWith('.sql') || statSync(path).isDirectory() });
process.stdout.write(`build: dist/ ready\n`);
