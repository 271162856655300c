// A domain's MX hosts side by side: what the reports say failed at each (failed sessions, their share of the
// domain's failures, the last day, the main result type) beside what the latest live check found there (STARTTLS,
// TLS version, the certificate's expiry and issuer, TLSA records and whether one matches).
import { checkDetail, type StoredCheck } from '../../../common/posture-store.ts';
import type { MxFailures } from '../../dashboard-queries.ts';
import { checkBadge, html, number, percent, type Html, type Table } from '../html.ts';

/** The part of an mx-tls check's detail the table shows (services/scheduler/posture/smtp-tls.ts). */
interface MxTlsDetail {
  starttls?: boolean;
  tlsVersion?: string;
  validTo?: string;
  daysToExpiry?: number;
  issuer?: string;
  tlsa?: string[];
  tlsaMatch?: boolean;
}

export interface MxHealth {
  host: string;
  failed: number;
  /** Of the domain's failed sessions in the period. */
  share: number;
  lastFailure: string;
  topResultType: string;
  check: (StoredCheck & { parsed: MxTlsDetail }) | undefined;
}

/** One row per MX host named by the reports' failures or by the latest check, most failed first. */
export function mxHealth(failures: MxFailures[], totalFailed: number, run: StoredCheck[]): MxHealth[] {
  const checks = new Map(
    run
      .filter((c) => c.check_name === 'mx-tls')
      .map((c) => [c.subject.toLowerCase(), { ...c, parsed: checkDetail(c) }]),
  );
  const rows: MxHealth[] = failures.map((f) => {
    const host = f.receiving_mx_hostname ?? '';
    return {
      host,
      failed: Number(f.failed),
      share: totalFailed > 0 ? Number(f.failed) / totalFailed : 0,
      lastFailure: f.last_day,
      topResultType: f.top_result_type,
      check: checks.get(host.toLowerCase().replace(/\.$/, '')),
    };
  });
  const named = new Set(rows.map((r) => r.host.toLowerCase().replace(/\.$/, '')));
  for (const [host, check] of checks)
    if (!named.has(host)) rows.push({ host, failed: 0, share: 0, lastFailure: '', topResultType: '', check });
  return rows;
}

const tlsaText = (d: MxTlsDetail): string =>
  !d.tlsa || d.tlsa.length === 0
    ? 'none'
    : `${d.tlsa.length} record(s)${d.tlsaMatch === undefined ? '' : d.tlsaMatch ? ', one matches' : ', none matches'}`;

export function mxHealthTable(rows: MxHealth[], checkedAt: string | undefined): Table<MxHealth> {
  const d = (r: MxHealth): MxTlsDetail => r.check?.parsed ?? {};
  const checked = (r: MxHealth, value: (x: MxTlsDetail) => string): string => (r.check ? value(d(r)) : '');
  return {
    id: 'mx-hosts',
    caption: 'MX hosts',
    empty: 'No failure names an MX host in this period, and no live check has run.',
    rows,
    columns: [
      { label: 'MX host', value: (r) => r.host || '(not given)' },
      { label: 'Failed sessions', value: (r) => r.failed, cell: (r) => number(r.failed), numeric: true },
      {
        label: 'Share of failures',
        value: (r) => Number(r.share.toFixed(6)),
        cell: (r) => percent(r.share),
        numeric: true,
      },
      { label: 'Last failure', value: (r) => r.lastFailure },
      { label: 'Failed most as', value: (r) => r.topResultType },
      {
        label: checkedAt ? `Check of ${checkedAt} UTC` : 'Live check',
        value: (r) => r.check?.severity ?? 'not checked',
        cell: (r): Html =>
          r.check ? checkBadge(r.check.severity, r.check.summary) : html`<span class="muted">not checked</span>`,
      },
      { label: 'STARTTLS', value: (r) => checked(r, (x) => (x.starttls ? 'yes' : 'no')) },
      { label: 'TLS', value: (r) => checked(r, (x) => x.tlsVersion ?? '') },
      {
        label: 'Certificate expires',
        value: (r) => checked(r, (x) => (x.validTo ? `${x.validTo.slice(0, 10)} (${x.daysToExpiry ?? '?'} days)` : '')),
      },
      { label: 'Issuer', value: (r) => checked(r, (x) => x.issuer ?? '') },
      { label: 'TLSA', value: (r) => checked(r, tlsaText) },
    ],
  };
}
