// What the policy host tells the rest of the system about its certificates: the state of every hosted domain's
// mta-sts.<domain> (issued, expired, unusable, pending, failed, missing), written to sts_certificates when it changes,
// so the API can answer a policy change with pending-certificate and the dashboard can show why.
import type { ClickHouseClient } from '../common/clickhouse.ts';
import type { Logger } from '../common/logger.ts';
import { toClickHouseDateTime } from '../common/sql.ts';
import {
  certificateState,
  currentCertificates,
  unknownCertificate,
  writeCertificates,
  type CertificateRow,
} from '../common/sts-certificates.ts';
import { clientRows } from '../common/sts-policies.ts';
import type { LoadedCertificate } from './policy-host.ts';

/** What the ACME manager knows of a host: its last failed order (services/mta-sts/acme.ts). */
export interface OrderStatus {
  failure(host: string): { reason: string; retryAt: Date } | undefined;
}

type State = Omit<CertificateRow, 'host' | 'checked_at' | 'version'>;

/**
 * The state of each hosted domain's policy host name, from the certificates read and the ACME orders; and of every
 * other certificate read, so that a domain whose certificate is in place before it is hosted is active at once.
 */
export function hostStates(
  domains: string[],
  contexts: Map<string, LoadedCertificate>,
  acme: OrderStatus | undefined,
  certDir: string,
  now: Date,
): Map<string, State> {
  const out = new Map<string, State>();
  const hosted = new Set(domains.map((d) => `mta-sts.${d}`));
  for (const [host, loaded] of contexts)
    if (!hosted.has(host)) out.set(host, certificateState(loaded.certificate, host, now));
  for (const host of hosted) {
    const loaded = contexts.get(host);
    const found = loaded ? certificateState(loaded.certificate, host, now) : undefined;
    const failure = acme?.failure(host);
    const retry = failure && `; tried again after ${toClickHouseDateTime(failure.retryAt)} UTC`;
    if (found?.state === 'issued') out.set(host, found);
    else if (failure)
      out.set(host, {
        ...(found ?? unknownCertificate('failed', '')),
        state: 'failed',
        reason: `the ACME order failed: ${failure.reason}${retry}${found ? ` (the certificate held: ${found.reason})` : ''}`,
      });
    else if (found) out.set(host, acme ? { ...found, reason: `${found.reason}; a new one is ordered` } : found);
    else if (acme) out.set(host, unknownCertificate('pending', 'being ordered from the ACME CA'));
    else
      out.set(
        host,
        unknownCertificate(
          'missing',
          `no ${host}.pem and ${host}.key in ${certDir}, and no ACME CA configured (MTA_STS_ACME_DIRECTORY) to order one`,
        ),
      );
  }
  return out;
}

const signature = (s: State): string => [s.state, s.valid_until, s.issuer, s.reason].join('\n');

/** Writes a host's state only when it changed since the last row (the table's own newest row, after a restart). */
export class CertificateRecorder {
  private last: Map<string, string> | undefined;
  private sequence = 0;
  private running: Promise<void> = Promise.resolve();

  constructor(
    private readonly ch: ClickHouseClient,
    private readonly logger: Logger,
  ) {}

  /**
   * One recording at a time: a refresh and a finished ACME round both record, and side by side each would compare
   * against the same last rows and write the same change twice.
   */
  record(states: Map<string, State>, now: Date): Promise<void> {
    this.running = this.running.then(() => this.recordNow(states, now));
    return this.running;
  }

  private async recordNow(states: Map<string, State>, now: Date): Promise<void> {
    try {
      this.last ??= new Map(
        [...(await currentCertificates(clientRows(this.ch)))].map(([host, row]) => [host, signature(row)]),
      );
      const changed = [...states].filter(([host, s]) => this.last!.get(host) !== signature(s));
      const at = toClickHouseDateTime(now);
      await writeCertificates(
        this.ch,
        changed.map(([host, s]) => ({
          host,
          ...s,
          checked_at: at,
          version: now.getTime() * 1000 + (this.sequence++ % 1000),
        })),
      );
      for (const [host, s] of changed) {
        this.last.set(host, signature(s));
        this.logger.info({ host, state: s.state, reason: s.reason || undefined }, 'policy host certificate state');
      }
    } catch (err) {
      // Told again at the next refresh: nothing is marked written until ClickHouse took it.
      this.logger.warn({ err }, 'could not record the certificate states');
    }
  }
}
