// A private RabbitMQ node for tests that must break the broker itself (stop_app, start_app), which a test may
// never do to the shared node on 5672. It runs from the machine's RabbitMQ installation with its own name,
// ports, config, data and log folders, all under one temporary folder that is removed when the node stops.
//
// Erlang cookie: Debian's rabbitmq-server and rabbitmqctl wrappers, run as root, switch to the `rabbitmq` user
// (`su rabbitmq`), whose HOME is /var/lib/rabbitmq. That is how the shared node is controlled here too, so the
// node and every rabbitmqctl call read the same /var/lib/rabbitmq/.erlang.cookie; nothing writes a cookie.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { freePort } from './isolation.ts';

const CTL_TIMEOUT_MS = 30_000;
const BOOT_TIMEOUT_MS = 60_000;

type Run = { code: number; stdout: string; stderr: string };

function run(file: string, args: readonly string[], env: Record<string, string> = {}, timeoutMs = CTL_TIMEOUT_MS): Promise<Run> {
  return new Promise((resolve) => {
    execFile(file, args, { env: { ...process.env, ...env }, timeout: timeoutMs, cwd: tmpdir() }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
      resolve({ code, stdout, stderr: stderr || (error && !stdout ? error.message : '') });
    });
  });
}

export class RabbitNode {
  readonly name: string;
  readonly port: number;
  readonly distPort: number;
  readonly dir: string;
  #stopped = false;

  private constructor(name: string, port: number, distPort: number, dir: string) {
    this.name = name;
    this.port = port;
    this.distPort = distPort;
    this.dir = dir;
  }

  /** guest/guest on the node's port; guest may only log in over loopback, which is all we use. */
  get amqpUrl(): string {
    return `amqp://guest:guest@127.0.0.1:${this.port}`;
  }

  get #pidFile(): string {
    return join(this.dir, 'node.pid');
  }

  /**
   * Starts a node and resolves once it accepts AMQP connections. On failure the node is stopped and its
   * folder removed before the error is thrown.
   * @throws when the node does not boot within a minute.
   */
  static async start(): Promise<RabbitNode> {
    const dir = await mkdtemp(join(tmpdir(), 'conveyor-rabbit-'));
    const node = new RabbitNode(`conveyor-test-${randomBytes(4).toString('hex')}@localhost`, await freePort(), await freePort(), dir);
    try {
      await node.#boot();
      return node;
    } catch (error) {
      await node.stop();
      throw error;
    }
  }

  async #boot(): Promise<void> {
    const mnesia = join(this.dir, 'mnesia');
    const logs = join(this.dir, 'log');
    await run('mkdir', ['-p', mnesia, logs]);
    // Our own config, env and plugin files: the shared ones bind 5672 and name the node rabbit@localhost.
    await writeFile(join(this.dir, 'rabbitmq.conf'), 'loopback_users.guest = true\n');
    await writeFile(join(this.dir, 'rabbitmq-env.conf'), 'SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"\n');
    await writeFile(join(this.dir, 'enabled_plugins'), '[].\n');
    const owned = await run('chown', ['-R', 'rabbitmq:rabbitmq', this.dir]);
    if (owned.code !== 0) throw new Error(`chown ${this.dir} failed: ${owned.stderr}`);
    const started = await run('rabbitmq-server', ['-detached'], {
      RABBITMQ_NODENAME: this.name,
      RABBITMQ_NODE_IP_ADDRESS: '127.0.0.1',
      RABBITMQ_NODE_PORT: String(this.port),
      RABBITMQ_DIST_PORT: String(this.distPort),
      RABBITMQ_MNESIA_BASE: mnesia,
      RABBITMQ_LOG_BASE: logs,
      RABBITMQ_PID_FILE: this.#pidFile,
      RABBITMQ_CONFIG_FILE: join(this.dir, 'rabbitmq.conf'),
      RABBITMQ_CONF_ENV_FILE: join(this.dir, 'rabbitmq-env.conf'),
      RABBITMQ_ENABLED_PLUGINS_FILE: join(this.dir, 'enabled_plugins'),
    });
    if (started.code !== 0) throw new Error(`rabbitmq-server -detached failed (${started.code}): ${started.stderr}`);
    // await_startup gives up at once while the node has not registered with epmd yet, so it is retried.
    const deadline = Date.now() + BOOT_TIMEOUT_MS;
    for (;;) {
      const awaited = await this.ctl(['await_startup', '--timeout', '60'], BOOT_TIMEOUT_MS);
      if (awaited.code === 0) return;
      if (Date.now() > deadline) throw new Error(`${this.name} did not boot in ${BOOT_TIMEOUT_MS} ms: ${awaited.stderr}\n${await this.logTail()}`);
      await delay(250);
    }
  }

  /** Runs rabbitmqctl against this node. */
  ctl(args: readonly string[], timeoutMs = CTL_TIMEOUT_MS): Promise<Run> {
    return run('rabbitmqctl', ['-n', this.name, ...args], {}, timeoutMs);
  }

  async #ctlOrThrow(args: readonly string[]): Promise<void> {
    const result = await this.ctl(args);
    if (result.code !== 0) throw new Error(`rabbitmqctl ${args.join(' ')} on ${this.name} failed (${result.code}): ${result.stderr}`);
  }

  /** Stops the RabbitMQ application (every client is disconnected; the Erlang node stays up). */
  stopApp(): Promise<void> {
    return this.#ctlOrThrow(['stop_app']);
  }

  /** Starts the RabbitMQ application again; resolves once it accepts connections. */
  async startApp(): Promise<void> {
    await this.#ctlOrThrow(['start_app']);
    await this.#ctlOrThrow(['await_startup', '--timeout', '60']);
  }

  async logTail(lines = 20): Promise<string> {
    try {
      const text = await readFile(join(this.dir, 'log', `${this.name}.log`), 'utf8');
      return text.trim().split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  }

  /**
   * Stops the node and removes its folder; safe to call more than once and after a failed start. When
   * rabbitmqctl cannot stop it, the node's own Erlang VM is killed.
   */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    const stopped = await this.ctl(['stop', this.#pidFile]);
    if (stopped.code !== 0) {
      for (const pid of await this.#vmPids()) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // Already gone.
        }
      }
    }
    await rm(this.dir, { recursive: true, force: true });
  }

  /**
   * The Erlang VM(s) started for this node: the name is not on the command line (RabbitMQ reads it from the
   * environment), so the environment is what tells our VM from the shared node's. epmd is never one of them.
   */
  async #vmPids(): Promise<number[]> {
    const entries = await readdir('/proc').catch(() => [] as string[]);
    const pids: number[] = [];
    for (const entry of entries.filter((e) => /^\d+$/.test(e))) {
      const comm = await readFile(`/proc/${entry}/comm`, 'utf8').catch(() => '');
      if (!comm.startsWith('beam')) continue;
      const environ = await readFile(`/proc/${entry}/environ`, 'utf8').catch(() => '');
      if (environ.split('\0').includes(`RABBITMQ_NODENAME=${this.name}`)) pids.push(Number(entry));
    }
    return pids;
  }
}
