// `npm start`: the API and one worker for local use, each in its own process, stopped together.
import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { SERVICE_NODE_FLAGS } from './node-flags.ts';

const root = join(import.meta.dirname, '..');
const services = { api: 'services/api/src/main.ts', worker: 'services/worker/src/main.ts' };
// Locally, no keys: the API then acts for one tenant and listens on 127.0.0.1 only (AUTH_MODE=apikey to use keys).
const env = { ...process.env, AUTH_MODE: process.env['AUTH_MODE'] || 'none' };

// Children get their own process group, so that a Ctrl-C reaches them once, through us, and not twice
// (once from the terminal and once forwarded), which they would take as "force quit".
const children = new Map<string, ChildProcess>(
  Object.entries(services).map(([name, file]) => [
    name,
    spawn(process.execPath, [...SERVICE_NODE_FLAGS, join(root, file)], { cwd: root, env, stdio: 'inherit', detached: true }),
  ]),
);

let stopping = false;
let lastSignalAt = 0;
let exitCode = 0;

function signalAll(signal: NodeJS.Signals): void {
  for (const child of children.values()) if (child.exitCode === null && child.signalCode === null) child.kill(signal);
}

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.on(signal, () => {
    // npm and the terminal may both deliver the same Ctrl-C; only a repeat after a pause means "force".
    const now = Date.now();
    if (stopping && now - lastSignalAt < 1_000) return;
    lastSignalAt = now;
    stopping = true;
    signalAll(signal);
  });
}

for (const [name, child] of children) {
  child.on('exit', (code, signal) => {
    children.delete(name);
    if (code !== 0) exitCode = 1;
    if (!stopping) {
      // One service died on its own: stop the other rather than run half a system.
      console.error(`conveyor: ${name} exited (${signal ?? code}); stopping the rest`);
      stopping = true;
      exitCode = 1;
      signalAll('SIGTERM');
    }
    if (children.size === 0) process.exit(exitCode);
  });
}
