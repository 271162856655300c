// One stored mail message → the jobs of the reports it holds: the path the import command and the mailbox fetcher
// share (the SMTP receiver takes the same extraction and DKIM check, with its envelope). Receipt ids come from the
// message's bytes, so reading the same message again queues nothing new and counts nothing twice.
import { createHash } from 'node:crypto';
import type { ReportJobInput } from '../../../schemas/job.ts';
import type { DNSResolver } from './dkim.ts';
import { extractReports, MailRejectedError, type ExtractOptions } from './extract.ts';
import { mailDkim, mailJobs, unverifiedDkim } from './mail-jobs.ts';

export type MessageOutcome =
  { kind: 'reports'; jobs: ReportJobInput[] } | { kind: 'not-report' } | { kind: 'refused'; reason: string };

export const contentId = (bytes: Buffer | string): string =>
  createHash('sha256').update(bytes).digest('hex').slice(0, 40);

export async function messageJobs(
  raw: Buffer,
  o: {
    limits: ExtractOptions;
    channel: 'import' | 'imap';
    /** false: DKIM not verified (the verdict says why), for old mail whose keys are gone. */
    dkim: boolean;
    /** DNS for DKIM keys; by default the system's. */
    resolver?: DNSResolver | undefined;
    receivedAt?: string;
  },
): Promise<MessageOutcome> {
  let mail;
  try {
    mail = await extractReports(raw, o.limits);
  } catch (err) {
    return { kind: 'refused', reason: err instanceof MailRejectedError ? err.message : 'not a MIME message' };
  }
  if (mail.parts.length === 0) return { kind: 'not-report' };
  const dkim = o.dkim
    ? await mailDkim(raw, mail, o.resolver)
    : unverifiedDkim(`not verified (${o.channel} without DKIM lookups)`);
  const id = contentId(raw);
  const jobs = mailJobs(mail, dkim, {
    channel: o.channel,
    receivedAt: o.receivedAt ?? new Date().toISOString(),
    remoteAddress: '',
    envelope: { from: '', to: [], helo: '', tlsProtocol: '', tlsCipher: '' },
    dkimPolicy: 'record',
    receiptId: (part) => `${o.channel}-${id}-${part}`,
  });
  return { kind: 'reports', jobs };
}
