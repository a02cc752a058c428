// `npm run migrate`: brings the database named by DATABASE_URL up to date, creating it if needed.
import { loadConfig } from '../services/core/src/config.ts';
import { Database } from '../services/core/src/db/database.ts';
import { createLogger } from '../services/core/src/log.ts';

const config = loadConfig();
const log = createLogger({ service: 'migrate', level: config.logLevel });
const database = new Database(config, 'conveyor-migrate', log);
try {
  await database.start();
  log.info('database is up to date');
} finally {
  await database.stop();
}
