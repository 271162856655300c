// Delivers forwarded reports (queued by the worker: services/common/forwarding.ts): a `mailto:` destination gets an
// RFC 8460 §5.3 report mail through the SMTP relay (multipart/report, the original file as its attachment, DKIM-signed
// with FORWARD_DKIM_*), an `https:` one a POST of the original bytes with their content type. Both carry
// tlsrpt-forwarded-by (a deployment receiving it never forwards it again) and one id per report and destination
// (Message-ID, Idempotency-Key) that stays the same on every retry. Retried with backoff, each outcome recorded in
// forward_deliveries. A process killed after a send and before its record sends it again on restart, with that id.
import { hostname } from 'node:os';
import { readFileSync } from 'node:fs';
import { UnrecoverableError, Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Transporter } from 'nodemailer';
import type { ClickHouseClient } from '../common/clickhouse.ts';
import type { Config } from '../common/config.ts';
import type { Logger } from '../common/logger.ts';
import { toClickHouseDateTime } from '../common/sql.ts';
import { FORWARD_ATTEMPTS, FORWARDED_HEADER, forwardId, type ForwardJob } from '../common/forwarding.ts';
import { createMailer, type NotifyConfig } from './notify/deliveries.ts';
import type { ForwardDeliveryRow } from '../../schemas/rows.ts';
import { postJson, RefusedTarget } from './notify/guarded-post.ts';
import { urlShownAs } from './notify/messages.ts';

export type ForwardSettings = NotifyConfig &
  Pick<
    Config,
    | 'FORWARD_FROM'
    | 'FORWARD_DKIM_DOMAIN'
    | 'FORWARD_DKIM_SELECTOR'
    | 'FORWARD_DKIM_KEY_FILE'
    | 'FORWARD_INSTANCE'
    | 'FORWARD_ALLOW_PRIVATE'
    | 'FORWARD_LOCK_MS'
  >;

/** A header value from a report's own text: one line of printable ASCII, at most 200 characters. */
const headerText = (s: string): string => s.replace(/[^\x20-\x7e]/g, '?').slice(0, 200);

/** An address as the envelope and the To header take it (the rule's text, checked when the rules loaded). */
const mailAddress = (destination: string): string => decodeURIComponent(destination.slice('mailto:'.length));

/** The report mail of RFC 8460 §5.3 around the original bytes. */
export function reportMail(job: ForwardJob, o: { from: string; instance: string; now: Date }): string {
  const id = forwardId(job.reportKey, job.destination);
  const boundary = `tlsrpt-${id}`;
  const domain = headerText(job.policyDomain);
  const submitter = headerText(job.organization);
  const filename = headerText(job.filename).replace(/["\\]/g, '_');
  const fromDomain = /@([^>\s]+)/.exec(o.from)?.[1] ?? 'localhost';
  const body = (
    Buffer.from(job.bodyBase64, 'base64')
      .toString('base64')
      .match(/.{1,76}/g) ?? []
  ).join('\r\n');
  return [
    `From: ${o.from}`,
    `To: ${mailAddress(job.destination)}`,
    `Date: ${o.now.toUTCString().replace('GMT', '+0000')}`,
    `Message-ID: <forward-${id}@${fromDomain}>`,
    `Subject: Report Domain: ${domain} Submitter: ${submitter} Report-ID: <${headerText(job.reportId)}>`,
    `TLS-Report-Domain: ${domain}`,
    `TLS-Report-Submitter: ${submitter}`,
    `${FORWARDED_HEADER}: ${headerText(o.instance)}`,
    'MIME-Version: 1.0',
    `Content-Type: multipart/report; report-type="tlsrpt"; boundary="${boundary}"`,
    '',
    `--${boundary}`,
    'Content-Type: text/plain; charset=us-ascii',
    '',
    `An SMTP TLS report (RFC 8460) for ${domain} from ${submitter}, forwarded as received by ${headerText(o.instance)}.`,
    '',
    `--${boundary}`,
    `Content-Type: ${headerText(job.contentType)}`,
    'Content-Transfer-Encoding: base64',
    `Content-Disposition: attachment; filename="${filename}"`,
    '',
    body,
    `--${boundary}--`,
    '',
  ].join('\r\n');
}

/** A refusal that trying again cannot change: the receiver said no (4xx but 408/429). */
const permanent = (status: number): boolean => status >= 400 && status < 500 && status !== 408 && status !== 429;

async function deliver(job: ForwardJob, s: ForwardSettings, mailer: Transporter | undefined, instance: string) {
  if (job.destination.startsWith('mailto:')) {
    if (!mailer) throw new UnrecoverableError('NOTIFY_SMTP_URL is not set: no report mail can be forwarded');
    const to = mailAddress(job.destination);
    const from = /<([^>]+)>/.exec(s.FORWARD_FROM)?.[1] ?? s.FORWARD_FROM;
    await mailer.sendMail({
      envelope: { from, to: [to] },
      raw: reportMail(job, { from: s.FORWARD_FROM, instance, now: new Date() }),
    });
    return;
  }
  let answer: { status: number; text: string };
  try {
    answer = await postJson(job.destination, Buffer.from(job.bodyBase64, 'base64'), {
      timeoutMs: 30_000,
      allowPrivate: s.FORWARD_ALLOW_PRIVATE,
      headers: {
        'content-type': job.contentType,
        'user-agent': 'tlsrpt-pipeline-forward/1',
        [FORWARDED_HEADER]: instance,
        'idempotency-key': forwardId(job.reportKey, job.destination),
      },
    });
  } catch (err) {
    if (err instanceof RefusedTarget) throw new UnrecoverableError(err.message);
    throw err;
  }
  if (answer.status >= 200 && answer.status < 300) return;
  const reason = `${new URL(job.destination).origin} answered ${answer.status}: ${answer.text.slice(0, 200)}`;
  throw permanent(answer.status) ? new UnrecoverableError(reason) : new Error(reason);
}

/** A destination as it may be shown: an https URL's path may hold a secret. */
export const forwardShownAs = (destination: string): string =>
  destination.startsWith('mailto:') ? destination : urlShownAs(destination);

function record(job: Job<ForwardJob>, state: ForwardDeliveryRow['state'], error: string): ForwardDeliveryRow {
  const now = new Date();
  return {
    forward_id: forwardId(job.data.reportKey, job.data.destination),
    report_key: job.data.reportKey,
    receipt_id: job.data.receiptId,
    destination: forwardShownAs(job.data.destination),
    state,
    attempts: job.attemptsMade + (state === 'delivered' ? 1 : 0),
    error,
    at: toClickHouseDateTime(now),
    version: now.getTime(),
  };
}

export function createForwardWorker(
  name: string,
  connection: Redis,
  settings: ForwardSettings,
  deps: { clickhouse: ClickHouseClient; logger: Logger },
): Worker<ForwardJob> {
  const signing = settings.FORWARD_DKIM_DOMAIN && settings.FORWARD_DKIM_SELECTOR && settings.FORWARD_DKIM_KEY_FILE;
  const mailer = createMailer(
    settings,
    signing
      ? {
          dkim: {
            domainName: settings.FORWARD_DKIM_DOMAIN,
            keySelector: settings.FORWARD_DKIM_SELECTOR,
            privateKey: readFileSync(settings.FORWARD_DKIM_KEY_FILE, 'utf8'),
          },
        }
      : {},
  );
  const instance = settings.FORWARD_INSTANCE || hostname();
  const write = (row: ForwardDeliveryRow): Promise<unknown> =>
    deps.clickhouse
      .insert({ table: 'forward_deliveries', values: [row], format: 'JSONEachRow' })
      .catch((err: unknown) => deps.logger.warn({ err }, 'a forwarding record was not written'));
  const worker = new Worker<ForwardJob>(
    name,
    async (job) => {
      // Its bytes are dropped only once delivered: a job without them was delivered by a process that died before
      // completing it, and is not sent again.
      if (job.data.bodyBase64 !== '') {
        await deliver(job.data, settings, mailer, instance);
        // The done job is kept 30 days for its id (a copy arriving meanwhile is not sent again): without the bytes.
        await job.updateData({ ...job.data, bodyBase64: '' });
      }
      await write(record(job, 'delivered', ''));
    },
    {
      connection,
      concurrency: 4,
      lockDuration: settings.FORWARD_LOCK_MS,
      stalledInterval: Math.min(30_000, Math.round(settings.FORWARD_LOCK_MS / 2)),
    },
  );
  worker.on('failed', (job, err) => {
    if (!job) return;
    const last = err instanceof UnrecoverableError || job.attemptsMade >= (job.opts.attempts ?? FORWARD_ATTEMPTS);
    void write(record(job, last ? 'failed' : 'retrying', err.message.slice(0, 500)));
    deps.logger.warn(
      {
        destination: forwardShownAs(job.data.destination),
        reportKey: job.data.reportKey,
        attempts: job.attemptsMade,
        err,
      },
      last ? 'report not forwarded; gave up' : 'report not forwarded; will retry',
    );
  });
  worker.on('error', (err) => deps.logger.warn({ err }, 'forward worker error'));
  return worker;
}
