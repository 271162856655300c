// The worker's side of report forwarding: once a report is stored, one forwarding job per destination its rules
// give, carrying the report exactly as received (services/common/forwarding.ts; the scheduler delivers them).
import { Job, type Queue, type Worker } from 'bullmq';
import { destinationsFor, forwardId, type ForwardJob, type ForwardRule } from '../common/forwarding.ts';
import type { ReportJob } from '../../schemas/job.ts';
import { isGzip } from './decode.ts';

/** What forwarding needs to know of a stored report, besides its bytes. */
export interface ReportAbout {
  organization: string;
  reportId: string;
  domains: string[];
}

export interface Forwarder {
  queueFor(worker: Worker, job: Job, reportKey: string, about: ReportAbout): Promise<number>;
}

/** RFC 8460's own types as sent; any other (octet-stream, a zip's entry, a report in a mail's text) by its bytes. */
export function forwardedType(contentType: string, bodyBase64: string): string {
  const given = contentType.split(';')[0]!.trim().toLowerCase();
  if (/^application\/tlsrpt\+(gzip|json)$/.test(given)) return given;
  return gzipped(bodyBase64) ? 'application/tlsrpt+gzip' : 'application/tlsrpt+json';
}

/** The body (base64) opens as gzip: its first bytes, read as the worker's decoder reads them. */
const gzipped = (bodyBase64: string): boolean => isGzip(Buffer.from(bodyBase64.slice(0, 4), 'base64'));

/** The file name it came with (a zip's entry by its own name), else RFC 8460 §5.3's (reports POSTed over HTTPS). */
export function fileName(job: Pick<ReportJob, 'smtp' | 'bodyBase64'>, about: ReportAbout): string {
  const given = job.smtp?.attachmentName.split('/').pop() ?? '';
  if (given) return given;
  const gzip = gzipped(job.bodyBase64);
  const safe = (s: string) => s.replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 100);
  return `${safe(about.organization)}!${safe(about.domains[0] ?? 'unknown')}!${safe(about.reportId)}.json${gzip ? '.gz' : ''}`;
}

export function createForwarder(queue: Queue<ForwardJob>, rules: ForwardRule[]): Forwarder | undefined {
  if (rules.length === 0) return undefined;
  return {
    async queueFor(worker, job, reportKey, about) {
      const data = job.data as ReportJob;
      // Forwarded to us by a deployment: never sent on again (two deployments forwarding to each other).
      if (typeof data.meta?.forwardedBy === 'string' && data.meta.forwardedBy !== '') return 0;
      const destinations = destinationsFor(rules, about.domains);
      if (destinations.length === 0) return 0;
      // A large body was let go while the job waited (report-worker.ts): read again from Redis.
      const body = data.bodyBase64 || (await Job.fromId<ReportJob>(worker, job.id ?? ''))?.data.bodyBase64 || '';
      if (body === '') throw new Error(`job ${job.id}: its body is no longer in Redis; forwarding not queued`);
      const contentType = forwardedType(data.contentType, body);
      const filename = fileName({ ...data, bodyBase64: body }, about);
      await queue.addBulk(
        destinations.map((destination) => ({
          name: 'forward',
          data: {
            reportKey,
            receiptId: data.receiptId,
            destination,
            policyDomain: about.domains[0] ?? '',
            organization: about.organization,
            reportId: about.reportId,
            bodyBase64: body,
            contentType,
            filename,
          },
          opts: { jobId: forwardId(reportKey, destination) },
        })),
      );
      return destinations.length;
    },
  };
}
