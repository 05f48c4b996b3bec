/** The local observability endpoint: /health, /status (JSON), /metrics (Prometheus text). */
import { createServer, type Server } from 'node:http'
import type { NodeMetrics } from './metrics.ts'

export async function startHttp (hostPort: string, status: () => unknown, metrics: NodeMetrics): Promise<{ server: Server, port: number }> {
  const i = hostPort.lastIndexOf(':')
  const host = hostPort.slice(0, i)
  const port = Number(hostPort.slice(i + 1))
  const server = createServer((req, res) => {
    const send = (code: number, type: string, body: string): void => { res.writeHead(code, { 'content-type': type }); res.end(body) }
    if (req.method !== 'GET') { send(405, 'text/plain', 'method not allowed\n'); return }
    if (req.url === '/health') send(200, 'application/json', '{"ok":true}\n')
    else if (req.url === '/status') send(200, 'application/json', JSON.stringify(status(), null, 2) + '\n')
    else if (req.url === '/metrics') {
      metrics.registry.metrics().then(text => send(200, metrics.registry.contentType, text), () => send(500, 'text/plain', 'metrics failed\n'))
    } else send(404, 'text/plain', 'not found: try /health, /status, /metrics\n')
  })
  await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(port, host, () => resolve()) })
  const address = server.address()
  return { server, port: typeof address === 'object' && address !== null ? address.port : port }
}
