// A reject row gives back the job it was made from, so npm run replay-rejects can process it again.
import { describe, expect, it } from 'vitest';
import { reportJobSchema, type ReportJob } from '../../schemas/job.ts';
import { ReportRejectedError } from '../../services/common/errors.ts';
import { rejectedRows } from '../../services/worker/rows.ts';
import { jobFromReject } from '../../schemas/job.ts';

const smtpJob: ReportJob = reportJobSchema.parse({
  v: 1,
  receiptId: 'mail-1:0',
  receivedAt: '2026-11-20T08:15:42.123Z',
  channel: 'smtp',
  remoteAddress: '192.0.2.25',
  contentType: 'application/tlsrpt+gzip',
  bodyBase64: Buffer.from('not a report').toString('base64'),
  smtp: {
    envelopeFrom: 'noreply@sender.example',
    envelopeTo: ['tlsrpt@reports.example'],
    subject: 'Report Domain: example.com',
    attachmentName: 'report.json.gz',
    mailFlags: ['report-in-text-body'],
    dkim: { result: 'pass', signingDomain: 'sender.example', submitterAligned: true },
  },
  meta: { note: 'kept' },
});

const httpsJob: ReportJob = reportJobSchema.parse({
  v: 1,
  receiptId: 'https-1',
  receivedAt: '2026-11-21T23:59:59.999Z',
  channel: 'https',
  userAgent: 'curl/8',
  contentEncoding: 'gzip',
  path: '/v1/tlsrpt?x=1',
  bodyBase64: Buffer.from([0x1f, 0x8b, 0, 1]).toString('base64'),
});

describe('jobFromReject', () => {
  it.each([
    ['an SMTP receipt with its mail metadata', smtpJob],
    ['an HTTPS receipt without metadata', httpsJob],
  ])('gives back %s, received_at to the second', (_name, job) => {
    const error = new ReportRejectedError('internal-error', 'TypeError: injected');
    const [row] = rejectedRows(job, Buffer.from(job.bodyBase64, 'base64'), error, new Date()).rejects;
    const back = jobFromReject(row!);
    expect(back).toEqual({ ...job, receivedAt: `${job.receivedAt.slice(0, 19)}.000Z` });
  });

  it('refuses a row that makes no valid job (a salvaged bad-job-payload)', () => {
    const [row] = rejectedRows(
      { ...httpsJob, receiptId: '' },
      Buffer.from(httpsJob.bodyBase64, 'base64'),
      new ReportRejectedError('bad-job-payload', 'receiptId: too short'),
      new Date(),
    ).rejects;
    expect(() => jobFromReject(row!)).toThrow(/receiptId/);
  });

  it('a junk body past REJECT_MAX_RAW_BYTES keeps its first bytes, says so, and is not replayed; an internal-error body is kept whole', () => {
    const body = Buffer.alloc(5000, 0x41);
    const job = { ...httpsJob, bodyBase64: body.toString('base64') };
    const [junk] = rejectedRows(job, body, new ReportRejectedError('not-json', 'x'), new Date(), 1000).rejects;
    expect(Buffer.from(junk!.raw_base64, 'base64')).toEqual(body.subarray(0, 1000));
    expect(junk!.body_bytes).toBe(5000);
    expect(junk!.detail).toMatch(/first 1000 of 5000 bytes/);
    expect(() => jobFromReject(junk!)).toThrow(/kept only in part/);
    const [bug] = rejectedRows(job, body, new ReportRejectedError('internal-error', 'x'), new Date(), 1000).rejects;
    expect(jobFromReject(bug!).bodyBase64).toBe(job.bodyBase64);
  });
});
