import { pino, type Logger } from 'pino';

export type { Logger };

/**
 * Creates the process's root logger: JSON lines on stdout, pretty-printed when stdout is a terminal.
 * Components take `log.child({ component })` from it; task lines add `taskId`, `type` and `attempt`.
 */
export function createLogger(options: { service: string; level: string }): Logger {
  const pretty = process.stdout.isTTY === true;
  return pino({
    level: options.level,
    base: { service: options.service },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
    // Credentials may travel inside connection URLs and headers; they never reach a log line.
    redact: {
      paths: ['*.password', '*.authorization', 'req.headers.authorization', 'databaseUrl', 'amqpUrl', 'authBootstrapKey', '*.authBootstrapKey'],
      censor: '[redacted]',
    },
    ...(pretty ? { transport: { target: 'pino-pretty', options: { translateTime: 'SYS:HH:MM:ss.l' } } } : {}),
  });
}

/** Hides the password of a connection URL so it can be logged. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return '[unparseable url]';
  }
}
