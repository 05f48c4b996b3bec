/**
 * Structured logs (pino). 'json': one JSON object per line (for a journal or a log collector);
 * 'pretty': human-readable lines; 'auto' picks pretty on a terminal and JSON otherwise.
 */
import pino from 'pino'

export type LogFormat = 'auto' | 'pretty' | 'json'

export function createLogger (level: string, name: string, format: LogFormat = 'auto') {
  const pretty = format === 'pretty' || (format === 'auto' && process.stdout.isTTY === true)
  return pino({
    name,
    level,
    ...(pretty ? { transport: { target: 'pino-pretty', options: { colorize: process.stdout.isTTY === true, translateTime: 'HH:MM:ss', ignore: 'pid,hostname' } } } : {})
  })
}
export type Logger = ReturnType<typeof createLogger>
