// The mailbox fetcher's metrics, by mailbox.
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

export function fetcherMetrics(registry: Registry) {
  const labelNames = ['mailbox'] as const;
  return {
    messages: new Counter({
      name: 'tlsrpt_mailbox_messages_total',
      help: 'Messages seen',
      labelNames,
      registers: [registry],
    }),
    queued: new Counter({
      name: 'tlsrpt_mailbox_reports_queued_total',
      help: 'Reports queued from mailbox messages',
      labelNames,
      registers: [registry],
    }),
    notReports: new Counter({
      name: 'tlsrpt_mailbox_not_reports_total',
      help: 'Messages holding no TLS report (left alone or moved to notReportFolder)',
      labelNames,
      registers: [registry],
    }),
    errors: new Counter({
      name: 'tlsrpt_mailbox_errors_total',
      help: 'Errors, by kind (authentication, connection, too-large)',
      labelNames: ['mailbox', 'kind'],
      registers: [registry],
    }),
    healthy: new Gauge({
      name: 'tlsrpt_mailbox_healthy',
      help: '0 from a failed session (an error, a command past its deadline) until the folder is read again',
      labelNames,
      registers: [registry],
    }),
    connected: new Gauge({
      name: 'tlsrpt_mailbox_connected',
      help: '1 while the mailbox is open',
      labelNames,
      registers: [registry],
    }),
    lag: new Histogram({
      name: 'tlsrpt_mailbox_lag_seconds',
      help: "From a message's arrival in the mailbox to its reports queued",
      buckets: [1, 5, 15, 60, 300, 900, 3600, 86_400, 7 * 86_400],
      labelNames,
      registers: [registry],
    }),
  };
}
export type FetcherMetrics = ReturnType<typeof fetcherMetrics>;
