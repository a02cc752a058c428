import { loadConfig } from '../../core/src/config.ts';
import { runUntilSignalled } from '../../core/src/lifecycle.ts';
import { createLogger } from '../../core/src/log.ts';
import { createWorkerService } from './service.ts';

const config = loadConfig();
const log = createLogger({ service: 'worker', level: config.logLevel }).child({ workerId: config.workerId });
const { lifecycle } = createWorkerService(config, log);
await runUntilSignalled(lifecycle, log, config.shutdownTimeoutMs + 10_000);
