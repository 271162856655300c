// A report mail → its DKIM verdict and one job per report part: the one path the SMTP receiver and the import
// command (and a mailbox reader) share, so a mail gives the same receipts whichever way it came in.
import type { DkimVerdict, ReportJobInput, SmtpMetaInput } from '../../../schemas/job.ts';
import { verifyDkim, type DNSResolver } from './dkim.ts';
import type { ExtractedMail } from './extract.ts';

/** The submitter a mail names (TLS-Report-Submitter, else its From domain), whose signature counts. */
export function submitterOf(mail: ExtractedMail): string {
  if (mail.reportSubmitterHeader) return mail.reportSubmitterHeader;
  const at = mail.from.lastIndexOf('@');
  return (at >= 0 ? mail.from.slice(at + 1) : mail.from).replace(/>$/, '').toLowerCase();
}

/** A verdict of `temperror`: the signatures could not be verified (`comment` says why). */
export function unverifiedDkim(comment: string): DkimVerdict {
  return {
    result: 'temperror',
    signingDomain: '',
    selector: '',
    submitterAligned: false,
    keyAllowsTlsrpt: false,
    lengthLimited: false,
    comment: comment.slice(0, 500),
    signatures: 0,
  };
}

/** The DKIM verdict of a mail; a failure to verify (DNS away) is `temperror`, never a throw. */
export async function mailDkim(raw: Buffer, mail: ExtractedMail, resolver?: DNSResolver): Promise<DkimVerdict> {
  try {
    return await verifyDkim(raw, submitterOf(mail), resolver);
  } catch (err) {
    return unverifiedDkim(err instanceof Error ? err.message : 'DKIM verification failed');
  }
}

export interface MailJobOptions {
  channel: 'smtp' | 'import' | 'imap';
  receivedAt: string;
  remoteAddress: string;
  envelope: { from: string; to: string[]; helo: string; tlsProtocol: string; tlsCipher: string };
  dkimPolicy: 'record' | 'require';
  /** The receipt id of each part (random for SMTP; derived from the content for imports, so a rerun adds none). */
  receiptId: (partIndex: number) => string;
}

/** One job per report part of a mail, each with the mail's metadata and DKIM verdict. */
export function mailJobs(mail: ExtractedMail, dkim: DkimVerdict, o: MailJobOptions): ReportJobInput[] {
  const base = {
    envelopeFrom: o.envelope.from,
    envelopeTo: o.envelope.to,
    helo: o.envelope.helo.slice(0, 500),
    tlsProtocol: o.envelope.tlsProtocol,
    tlsCipher: o.envelope.tlsCipher,
    messageId: mail.messageId,
    date: mail.date,
    subject: mail.subject,
    reportDomainHeader: mail.reportDomainHeader,
    reportSubmitterHeader: mail.reportSubmitterHeader,
    partCount: mail.parts.length,
    mailFlags: mail.flags,
    dkim,
    dkimPolicy: o.dkimPolicy,
  } satisfies Omit<SmtpMetaInput, 'attachmentName' | 'partIndex'>;
  return mail.parts.map((part, partIndex) => ({
    v: 1,
    receiptId: o.receiptId(partIndex),
    receivedAt: o.receivedAt,
    channel: o.channel,
    remoteAddress: o.remoteAddress,
    userAgent: '',
    contentType: part.contentType.slice(0, 1000),
    contentEncoding: '',
    path: '',
    bodyBase64: part.content.toString('base64'),
    smtp: { ...base, attachmentName: part.filename.slice(0, 1000), partIndex },
    meta: mail.forwardedBy ? { forwardedBy: mail.forwardedBy } : {},
  }));
}
