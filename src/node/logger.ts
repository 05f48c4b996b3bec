/** Structured logs (pino): JSON lines, or human-readable lines when stdout is a terminal. */
import pino from 'pino'

export function createLogger (level: string, name: string) {
  const pretty = process.stdout.isTTY === true && process.env.MEDMESH_LOG_JSON === undefined
  return pino({
    name,
    level,
    ...(pretty ? { transport: { target: 'pino-pretty', options: { colorize: true, translateTime: 'HH:MM:ss', ignore: 'pid,hostname' } } } : {})
  })
}
export type Logger = ReturnType<typeof createLogger>
