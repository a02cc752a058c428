import { loadConfig } from '../../core/src/config.ts';
import { runUntilSignalled } from '../../core/src/lifecycle.ts';
import { createLogger } from '../../core/src/log.ts';
import { createApiService } from './service.ts';

const config = loadConfig();
const log = createLogger({ service: 'api', level: config.logLevel });
const { lifecycle } = createApiService(config, log);
await runUntilSignalled(lifecycle, log, config.shutdownTimeoutMs + 5_000);
