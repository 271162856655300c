// The SMTP receiver for the rua mailboxes: our host can be the MX of the rua domain. STARTTLS offered, never
// required (RFC 8460 senders deliver even when TLS fails); AUTH disabled; only our report mailboxes accepted.
// A 250 only once every report in the message is stored in Redis.
import { randomUUID } from 'node:crypto';
import type { Queue } from 'bullmq';
import { SMTPServer, type SMTPServerDataStream, type SMTPServerSession } from 'smtp-server';
import type { Config } from '../common/config.ts';
import type { Logger } from '../common/logger.ts';
import type { ReceiverMetrics } from '../common/metrics.ts';
import { enqueueReport } from '../common/queue.ts';
import type { TlsCredentials } from '../common/tls.ts';
import { ByteBudget, ConnectionLimiter, RateLimiter } from '../common/source-limits.ts';
import type { DNSResolver } from '../common/intake/dkim.ts';
import { mailDkim, mailJobs } from '../common/intake/mail-jobs.ts';
import { extractReports, headerBytes, MailRejectedError } from '../common/intake/extract.ts';
import { recipientPolicy } from './recipients.ts';

export type SmtpReceiverConfig = Pick<
  Config,
  | 'SMTP_HOSTNAME'
  | 'SMTP_RECIPIENTS'
  | 'SMTP_MAX_MESSAGE_BYTES'
  | 'SMTP_MAX_HEADER_BYTES'
  | 'SMTP_MAX_MIME_PARTS'
  | 'SMTP_MAX_UNZIPPED_BYTES'
  | 'SMTP_MAX_ZIP_ENTRIES'
  | 'SMTP_MAX_INFLIGHT_BYTES'
  | 'SMTP_MAX_RECIPIENTS'
  | 'SMTP_MAX_CLIENTS'
  | 'SMTP_MAX_CONNECTIONS_PER_IP'
  | 'SMTP_RATE_LIMIT_PER_MINUTE'
  | 'SMTP_SOCKET_TIMEOUT_MS'
  | 'SMTP_MAX_SESSION_MS'
  | 'SMTP_ENQUEUE_TIMEOUT_MS'
  | 'SMTP_DKIM_POLICY'
>;

export interface SmtpReceiverDeps {
  queue: Queue;
  logger: Logger;
  tls: TlsCredentials;
  /** DNS for DKIM keys; tests inject one that serves their own keys. */
  resolver?: DNSResolver;
  /** Called with every reply code we decide on (tests). */
  onReply?: (code: number) => void;
  metrics?: ReceiverMetrics;
}

export interface SmtpReceiver {
  server: SMTPServer;
  /** Stop accepting (new connections and transactions get 421), let messages in flight finish, then close. */
  close(): Promise<void>;
}

function smtpError(code: number, enhanced: string, text: string): Error & { responseCode: number } {
  return Object.assign(new Error(`${enhanced} ${text}`), { responseCode: code });
}

export function createSmtpReceiver(config: SmtpReceiverConfig, deps: SmtpReceiverDeps): SmtpReceiver {
  const { queue, logger } = deps;
  const allowed = recipientPolicy(config.SMTP_RECIPIENTS);
  const reply = (code: number): void => {
    deps.metrics?.smtpReplies.inc({ code: String(code) });
    deps.onReply?.(code);
  };
  let closing = false;
  // Bytes of messages being read, parsed and queued: past the budget, 451 4.3.1.
  const inflight = new ByteBudget(config.SMTP_MAX_INFLIGHT_BYTES);
  const connections = new ConnectionLimiter(config.SMTP_MAX_CONNECTIONS_PER_IP);
  const counted = new Set<string>(); // sessions holding a place in `connections`
  const rate = new RateLimiter(config.SMTP_RATE_LIMIT_PER_MINUTE);

  const refuse = (code: number, enhanced: string, text: string): Error => {
    reply(code);
    return smtpError(code, enhanced, text);
  };

  async function handleMessage(raw: Buffer, session: SMTPServerSession): Promise<string> {
    if (headerBytes(raw) > config.SMTP_MAX_HEADER_BYTES) {
      throw new MailRejectedError(552, '5.3.4', `message header larger than ${config.SMTP_MAX_HEADER_BYTES} bytes`);
    }
    let mail;
    try {
      mail = await extractReports(raw, {
        maxMimeParts: config.SMTP_MAX_MIME_PARTS,
        maxUnzippedBytes: config.SMTP_MAX_UNZIPPED_BYTES,
        maxZipEntries: config.SMTP_MAX_ZIP_ENTRIES,
      });
    } catch (err) {
      if (err instanceof MailRejectedError) throw err;
      throw new MailRejectedError(554, '5.6.0', 'the message could not be parsed as MIME');
    }
    if (mail.parts.length === 0) {
      throw new MailRejectedError(554, '5.6.0', 'no TLS report found in the message (RFC 8460 report mail expected)');
    }
    const dkim = await mailDkim(raw, mail, deps.resolver);
    if (config.SMTP_DKIM_POLICY === 'require' && dkim.result === 'temperror') {
      // The verdict is unknown, not negative: let the sender try again rather than reject its report.
      throw new MailRejectedError(451, '4.7.5', `DKIM could not be verified now (${dkim.comment}); try again later`);
    }
    const envelope = session.envelope;
    const jobs = mailJobs(mail, dkim, {
      channel: 'smtp',
      receivedAt: new Date().toISOString(),
      remoteAddress: session.remoteAddress,
      envelope: {
        from: envelope.mailFrom ? envelope.mailFrom.address : '',
        to: envelope.rcptTo.map((r) => r.address),
        helo: session.hostNameAppearsAs || '',
        tlsProtocol: session.tlsOptions ? (session.tlsOptions.version ?? '') : '',
        tlsCipher: session.tlsOptions ? (session.tlsOptions.standardName ?? session.tlsOptions.name) : '',
      },
      dkimPolicy: config.SMTP_DKIM_POLICY,
      receiptId: () => randomUUID(),
    });
    try {
      await Promise.all(jobs.map((job) => enqueueReport(queue, job, config.SMTP_ENQUEUE_TIMEOUT_MS)));
    } catch (err) {
      logger.warn({ err }, 'queue unavailable; answering 451');
      throw new MailRejectedError(451, '4.3.0', 'the report could not be stored now; try again later');
    }
    deps.metrics?.reportsReceived.inc({ channel: 'smtp' }, jobs.length);
    logger.info(
      { session: session.id, reports: jobs.length, dkim: dkim.result, from: jobs[0]?.smtp?.envelopeFrom },
      'report mail accepted',
    );
    return `2.0.0 ${jobs.length} report(s) queued as ${jobs.map((j) => j.receiptId).join(' ')}`;
  }

  const server = new SMTPServer({
    name: config.SMTP_HOSTNAME,
    banner: 'TLS-RPT report receiver',
    size: config.SMTP_MAX_MESSAGE_BYTES,
    key: deps.tls.key,
    cert: deps.tls.cert,
    minVersion: 'TLSv1.2',
    disabledCommands: ['AUTH'],
    authOptional: true,
    hideSTARTTLS: false,
    disableReverseLookup: true,
    maxClients: config.SMTP_MAX_CLIENTS,
    socketTimeout: config.SMTP_SOCKET_TIMEOUT_MS,
    closeTimeout: 30_000,
    logger: false,
    onConnect(session, callback) {
      if (closing) return callback(refuse(421, '4.3.2', 'shutting down; try again later'));
      if (!connections.acquire(session.remoteAddress)) {
        return callback(refuse(421, '4.7.0', 'too many connections from your address; try again later'));
      }
      counted.add(session.id);
      callback();
    },
    onClose(session) {
      if (counted.delete(session.id)) connections.release(session.remoteAddress);
    },
    onMailFrom(_address, session, callback) {
      if (closing) return callback(refuse(421, '4.3.2', 'shutting down; try again later'));
      if (!rate.allow(session.remoteAddress))
        return callback(refuse(451, '4.7.1', 'too many messages from your address; try again later'));
      callback();
    },
    onRcptTo(address, session, callback) {
      if (session.envelope.rcptTo.length >= config.SMTP_MAX_RECIPIENTS) {
        return callback(refuse(452, '4.5.3', 'too many recipients'));
      }
      if (!allowed(address.address)) return callback(refuse(550, '5.1.1', `no report mailbox ${address.address} here`));
      callback();
    },
    onData(stream: SMTPServerDataStream, session, callback) {
      const chunks: Buffer[] = [];
      let size = 0;
      let busy = false;
      const { take, release } = inflight.hold();
      stream.on('data', (chunk: Buffer) => {
        size += chunk.length;
        // Read to the end either way (the client waits for our reply), but keep no more than the limits.
        if (size > config.SMTP_MAX_MESSAGE_BYTES || busy) return;
        if (!take(chunk.length)) {
          busy = true;
          chunks.length = 0;
          return release();
        }
        chunks.push(chunk);
      });
      stream.on('error', (err) => {
        release();
        callback(err);
      });
      stream.on('end', () => {
        if (stream.sizeExceeded || size > config.SMTP_MAX_MESSAGE_BYTES) {
          release();
          return callback(refuse(552, '5.3.4', `message larger than ${config.SMTP_MAX_MESSAGE_BYTES} bytes`));
        }
        if (busy) return callback(refuse(451, '4.3.1', 'too many messages in flight; try again later'));
        const raw = Buffer.concat(chunks);
        chunks.length = 0;
        handleMessage(raw, session)
          .then(
            (message) => {
              reply(250);
              callback(null, message);
            },
            (err: unknown) => {
              if (err instanceof MailRejectedError) return callback(refuse(err.code, err.enhanced, err.message));
              logger.error({ err }, 'message handling failed');
              callback(refuse(451, '4.3.0', 'local error; try again later'));
            },
          )
          .finally(release)
          .catch((err: unknown) => logger.error({ err }, 'could not answer a message'));
      });
    },
  });
  server.on('error', (err) => logger.warn({ err }, 'smtp server error'));
  // socketTimeout only catches idle clients; one sending a byte every few seconds is cut off here.
  server.server.on('connection', (socket: import('node:net').Socket) => {
    const timer = setTimeout(() => socket.destroy(), config.SMTP_MAX_SESSION_MS);
    timer.unref();
    socket.once('close', () => clearTimeout(timer));
  });

  return {
    server,
    close: () =>
      new Promise<void>((resolve) => {
        closing = true;
        server.close(() => resolve());
      }),
  };
}
