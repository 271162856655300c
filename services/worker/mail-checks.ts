// What a report mail says about its report (filename, Subject, TLS-Report-Domain) against what the report says.
// The report wins (RFC 8460 §5.6); each disagreement becomes a flag.
import type { SmtpMeta } from '../../schemas/job.ts';
import type { NormalizedReport } from './normalize.ts';
import { normalizeDomain } from './normalize-values.ts';

/** `submitter!policy-domain!begin-unix!end-unix[!unique].json[.gz]` (RFC 8460 §5.3.1), from a path or name. */
export function parseReportFilename(
  name: string,
): { submitter: string; domain: string; begin: number; end: number } | undefined {
  const base = name.split('/').pop() ?? '';
  const parts = base.replace(/\.(json\.gz|json|gz|zip)$/i, '').split('!');
  if (parts.length < 4) return undefined;
  const [submitter = '', domain = '', begin = '', end = ''] = parts;
  if (!/^\d+$/.test(begin) || !/^\d+$/.test(end)) return undefined;
  return {
    submitter: submitter.toLowerCase(),
    domain: normalizeDomain(domain).value,
    begin: Number(begin),
    end: Number(end),
  };
}

/** `Report Domain: D Submitter: S Report-ID: <id>` (RFC 8460 §5.3). */
export function parseReportSubject(
  subject: string,
): { domain: string; submitter: string; reportId: string } | undefined {
  const m = /Report Domain:\s*(\S+)\s+Submitter:\s*(\S+)\s+Report-ID:\s*<?([^>\s]+)>?/i.exec(subject);
  if (!m) return undefined;
  return { domain: normalizeDomain(m[1] ?? '').value, submitter: (m[2] ?? '').toLowerCase(), reportId: m[3] ?? '' };
}

export function mailMismatchFlags(smtp: SmtpMeta, report: NormalizedReport): string[] {
  const flags = new Set<string>(smtp.mailFlags);
  const domains = new Set(report.policies.map((p) => p.policyDomain));
  const submitterHeader = smtp.reportSubmitterHeader.toLowerCase();
  const file = parseReportFilename(smtp.attachmentName);
  if (file) {
    if (!domains.has(file.domain)) flags.add('filename-domain-mismatch');
    if (file.begin !== report.start.getTime() / 1000 || file.end !== report.end.getTime() / 1000)
      flags.add('filename-dates-mismatch');
    if (submitterHeader && file.submitter !== submitterHeader) flags.add('filename-submitter-mismatch');
  }
  const subject = parseReportSubject(smtp.subject);
  if (subject) {
    if (!domains.has(subject.domain)) flags.add('subject-domain-mismatch');
    // RFC 8460 §5.3's own example, which Postfix's reporter (sys4 tlsrpt-reporter) follows, writes
    // `<{report-id}@{submitter}>`: the report-id is the part before the submitter.
    const bare = subject.reportId.endsWith(`@${subject.submitter}`)
      ? subject.reportId.slice(0, -subject.submitter.length - 1)
      : subject.reportId;
    if (subject.reportId !== report.reportId && bare !== report.reportId) flags.add('subject-report-id-mismatch');
  }
  if (smtp.reportDomainHeader && !domains.has(normalizeDomain(smtp.reportDomainHeader).value))
    flags.add('header-domain-mismatch');
  if (!smtp.reportDomainHeader || !smtp.reportSubmitterHeader) flags.add('missing-tls-report-headers');
  if (smtp.dkim.result !== 'pass') flags.add(`dkim-${smtp.dkim.result}`);
  else if (!smtp.dkim.submitterAligned) flags.add('dkim-not-submitter');
  return [...flags];
}
