// Prometheus metrics. Each service creates its own registry with the metrics it owns; the names are shared here
// so dashboards see one vocabulary across services.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export function createRegistry(service: string): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ service });
  collectDefaultMetrics({ register: registry });
  return registry;
}

export function receiverMetrics(registry: Registry) {
  return {
    reportsReceived: new Counter({
      name: 'tlsrpt_reports_received_total',
      help: 'Report bodies stored in the queue, by channel',
      labelNames: ['channel'],
      registers: [registry],
    }),
    httpResponses: new Counter({
      name: 'tlsrpt_http_responses_total',
      help: 'HTTP responses by status',
      labelNames: ['status'],
      registers: [registry],
    }),
    smtpReplies: new Counter({
      name: 'tlsrpt_smtp_replies_total',
      help: 'SMTP replies to DATA, RCPT and connection, by code',
      labelNames: ['code'],
      registers: [registry],
    }),
  };
}
export type ReceiverMetrics = ReturnType<typeof receiverMetrics>;

export function workerMetrics(registry: Registry) {
  return {
    jobs: new Counter({
      name: 'tlsrpt_jobs_total',
      help: 'Jobs processed, by outcome (stored, rejected)',
      labelNames: ['outcome'],
      registers: [registry],
    }),
    rejects: new Counter({
      name: 'tlsrpt_rejects_total',
      help: 'Reports rejected, by reason',
      labelNames: ['reason'],
      registers: [registry],
    }),
    jobDuration: new Histogram({
      name: 'tlsrpt_job_duration_seconds',
      help: 'From job start to its rows confirmed by ClickHouse',
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30],
      registers: [registry],
    }),
    receiptToStored: new Histogram({
      name: 'tlsrpt_receipt_to_stored_seconds',
      help: 'From receipt (HTTP 202 / SMTP 250) to rows confirmed by ClickHouse',
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300],
      registers: [registry],
    }),
    batchRows: new Histogram({
      name: 'tlsrpt_insert_batch_rows',
      help: 'Rows per batch insert (all tables)',
      buckets: [1, 10, 100, 500, 1000, 2000, 5000, 10000, 50000],
      registers: [registry],
    }),
    batchSeconds: new Histogram({
      name: 'tlsrpt_insert_batch_seconds',
      help: 'Time to write one batch (all tables)',
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10],
      registers: [registry],
    }),
    batchFailures: new Counter({
      name: 'tlsrpt_insert_batch_failures_total',
      help: 'Batches whose insert failed (their jobs retry)',
      registers: [registry],
    }),
  };
}
export type WorkerMetrics = ReturnType<typeof workerMetrics>;

/** Queue depth and the age of the oldest waiting job, read from Redis when scraped. */
export function queueGauges(
  registry: Registry,
  read: () => Promise<{ waiting: number; active: number; delayed: number; failed: number; oldestWaitingMs: number }>,
): void {
  let last: Awaited<ReturnType<typeof read>> | undefined;
  let pending: Promise<void> | undefined;
  // One Redis read per scrape for all gauges.
  const refresh = (): Promise<void> =>
    (pending ??= read()
      .then((v) => void (last = v))
      .catch(() => void (last = undefined))
      .finally(() => (pending = undefined)));
  const gauge = (
    name: string,
    help: string,
    pick: (v: NonNullable<typeof last>) => number,
    labels?: Record<string, string>,
  ) =>
    new Gauge({
      name,
      help,
      labelNames: labels ? Object.keys(labels) : [],
      registers: [registry],
      async collect() {
        await refresh();
        if (last) {
          if (labels) this.set(labels, pick(last));
          else this.set(pick(last));
        }
      },
    });
  gauge('tlsrpt_queue_waiting', 'Jobs waiting in the report queue', (v) => v.waiting);
  gauge('tlsrpt_queue_active', 'Jobs being processed', (v) => v.active);
  gauge('tlsrpt_queue_delayed', 'Jobs waiting for a retry', (v) => v.delayed);
  gauge('tlsrpt_queue_failed', 'Jobs that exhausted their retries (kept for replay)', (v) => v.failed);
  gauge('tlsrpt_queue_oldest_waiting_seconds', 'Age of the oldest waiting job', (v) => v.oldestWaitingMs / 1000);
}

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

/**
 * A service's health for /healthz: unhealthy parts named (a mailbox whose server stalls), so that one stalled part
 * is seen while the others go on. Without one, /healthz answers ok while the process answers.
 */
export type HealthFn = () => { healthy: boolean; [detail: string]: unknown };

/** Serves /metrics, /healthz and /readyz, for services without an HTTP server of their own (worker, SMTP). */
export function createOpsServer(registry: Registry, ready: () => Promise<boolean>, health?: HealthFn): Server {
  return createServer(opsHandler(registry, ready, (_req, res) => send(res, 404, 'text/plain', 'not found\n'), health));
}

function send(res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

/** Wraps a handler so that /metrics (when a registry is given), /healthz and /readyz are answered before it. */
export function opsHandler(
  registry: Registry | undefined,
  ready: () => Promise<boolean>,
  next: Handler,
  health?: HealthFn,
): Handler {
  return (req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (registry && req.method === 'GET' && path === '/metrics') {
      registry.metrics().then(
        (text) => send(res, 200, registry.contentType, text),
        (err: unknown) => send(res, 500, 'text/plain', String(err)),
      );
      return;
    }
    if (req.method === 'GET' && path === '/healthz') {
      const { healthy, ...detail } = health?.() ?? { healthy: true };
      const body = JSON.stringify({ status: healthy ? 'ok' : 'unhealthy', ...detail });
      return send(res, healthy ? 200 : 503, 'application/json', body);
    }
    if (req.method === 'GET' && path === '/readyz') {
      ready().then(
        (ok) => send(res, ok ? 200 : 503, 'application/json', JSON.stringify({ status: ok ? 'ready' : 'not-ready' })),
        () => send(res, 503, 'application/json', '{"status":"not-ready"}'),
      );
      return;
    }
    next(req, res);
  };
}
