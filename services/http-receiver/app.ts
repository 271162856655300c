// The HTTPS report endpoint (RFC 8460 §3): POST application/tlsrpt+gzip or +json. A 202 means the report is
// stored in Redis; anything else tells the sender to keep it and retry (RFC 8460 §5.5).
import { FORWARDED_HEADER } from '../common/forwarding.ts';
import { randomUUID } from 'node:crypto';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { Queue } from 'bullmq';
import type { Config } from '../common/config.ts';
import type { Logger } from '../common/logger.ts';
import { guarded, parseTarget, sendJson } from '../common/http-guard.ts';
import type { ReceiverMetrics } from '../common/metrics.ts';
import { enqueueReport, QueueUnavailableError } from '../common/queue.ts';
import type { TlsCredentials } from '../common/tls.ts';
import { ByteBudget, ConnectionLimiter, RateLimiter } from '../common/source-limits.ts';
import type { ReportJobInput } from '../../schemas/job.ts';

export type HttpReceiverConfig = Pick<
  Config,
  | 'HTTP_PATH'
  | 'HTTP_MAX_BODY_BYTES'
  | 'HTTP_MAX_INFLIGHT_BYTES'
  | 'HTTP_ENQUEUE_TIMEOUT_MS'
  | 'HTTP_REQUEST_TIMEOUT_MS'
  | 'HTTP_MAX_CONNECTIONS'
  | 'HTTP_MAX_CONNECTIONS_PER_IP'
  | 'HTTP_RATE_LIMIT_PER_MINUTE'
>;

export interface HttpReceiverDeps {
  queue: Pick<Queue, 'add' | 'remove'>;
  logger: Logger;
  metrics: ReceiverMetrics;
  /** TLS credentials; undefined serves plain HTTP (only behind a TLS-terminating proxy). */
  tls: TlsCredentials | undefined;
}

const JSON_TYPES = new Set(['application/tlsrpt+json', 'application/json', 'application/tlsrpt', 'text/json']);
const GZIP_TYPES = new Set([
  'application/tlsrpt+gzip',
  'application/gzip',
  'application/x-gzip',
  'application/gzip-compressed',
  'application/x-gzip-compressed',
]);

export type BodyKind = 'json' | 'gzip';

/**
 * Which bodies we take: the registered media types and their common variants; gzip recognised by its magic
 * bytes under any type; a JSON object under no type at all. Undefined means 415.
 */
export function classifyBody(contentType: string, contentEncoding: string, body: Uint8Array): BodyKind | undefined {
  const mediaType = (contentType.split(';')[0] ?? '').trim().toLowerCase();
  const encoding = contentEncoding.trim().toLowerCase();
  const gzipMagic = body[0] === 0x1f && body[1] === 0x8b;
  if (encoding !== '' && encoding !== 'identity' && encoding !== 'gzip' && encoding !== 'x-gzip') return undefined;
  if (gzipMagic) return 'gzip';
  if (GZIP_TYPES.has(mediaType) || encoding === 'gzip' || encoding === 'x-gzip') return 'gzip';
  if (JSON_TYPES.has(mediaType)) return 'json';
  if (mediaType === '') {
    const first = Buffer.from(body.subarray(0, 64)).toString('utf8').trimStart();
    if (first.startsWith('{')) return 'json';
  }
  return undefined;
}

/** True when `pathname` is the report path or below it (rua URLs may carry longer paths). */
export function isReportPath(pathname: string, base: string): boolean {
  const b = base.replace(/\/+$/, '');
  return pathname === b || pathname === `${b}/` || pathname.startsWith(`${b}/`);
}

export function createHttpReceiver(config: HttpReceiverConfig, deps: HttpReceiverDeps): Server {
  const { queue, logger, metrics } = deps;
  const inflight = new ByteBudget(config.HTTP_MAX_INFLIGHT_BYTES);
  const send = (
    res: ServerResponse,
    status: number,
    body: Record<string, unknown>,
    headers: Record<string, string> = {},
  ): void => {
    if (res.headersSent) return;
    metrics.httpResponses.inc({ status: String(status) });
    sendJson(res, status, body, headers);
  };

  /**
   * Reads the body, holding its bytes in the in-flight budget; on success the caller gives them back (`release`)
   * once the job is in Redis or refused, so the bound covers every copy the request makes.
   */
  const readBody = (req: IncomingMessage): Promise<{ body: Buffer; release: () => void } | 'too-large' | 'busy'> =>
    new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      let settled = false;
      const { take, release } = inflight.hold();
      req.on('data', (chunk: Buffer) => {
        if (settled) return;
        if (size + chunk.length > config.HTTP_MAX_BODY_BYTES) {
          settled = true;
          release();
          chunks.length = 0;
          return resolve('too-large');
        }
        if (!take(chunk.length)) {
          // All bodies being read together are bounded: shed load instead of growing without limit.
          settled = true;
          release();
          chunks.length = 0;
          return resolve('busy');
        }
        size += chunk.length;
        chunks.push(chunk);
      });
      req.on('end', () => {
        if (settled) return;
        settled = true;
        const body = Buffer.concat(chunks);
        chunks.length = 0;
        resolve({ body, release });
      });
      req.on('error', (err) => {
        if (settled) return;
        settled = true;
        release();
        reject(err);
      });
      // Node reports a body cut off by the client as an 'error'; 'close' covers any other ending without 'end',
      // so the bytes always go back to the in-flight budget (which would otherwise shrink for good).
      req.on('close', () => {
        if (settled) return;
        settled = true;
        release();
        reject(new Error('the client closed the connection before the body ended'));
      });
    });

  const rate = new RateLimiter(config.HTTP_RATE_LIMIT_PER_MINUTE);
  const connections = new ConnectionLimiter(config.HTTP_MAX_CONNECTIONS_PER_IP);

  const handleReport = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    if (req.method !== 'POST') {
      return send(res, 405, { error: 'method-not-allowed', message: 'POST a TLS-RPT report here' }, { allow: 'POST' });
    }
    if (!rate.allow(req.socket.remoteAddress ?? '')) {
      return send(
        res,
        429,
        { error: 'rate-limited', message: 'too many reports from this address; retry later' },
        { 'retry-after': String(rate.retryAfterSeconds()) },
      );
    }
    const declared = Number(req.headers['content-length'] ?? NaN);
    if (Number.isFinite(declared) && declared > config.HTTP_MAX_BODY_BYTES) {
      return send(res, 413, { error: 'too-large', maxBytes: config.HTTP_MAX_BODY_BYTES }, { connection: 'close' });
    }
    const read = await readBody(req);
    if (read === 'too-large') {
      return send(res, 413, { error: 'too-large', maxBytes: config.HTTP_MAX_BODY_BYTES }, { connection: 'close' });
    }
    if (read === 'busy') {
      return send(
        res,
        503,
        { error: 'busy', message: 'too many reports in flight; retry later' },
        { 'retry-after': '30', connection: 'close' },
      );
    }
    try {
      await enqueueBody(req, res, read.body);
    } finally {
      read.release();
    }
  };

  const enqueueBody = async (req: IncomingMessage, res: ServerResponse, body: Buffer): Promise<void> => {
    if (body.length === 0) return send(res, 400, { error: 'empty-body', message: 'the request has no report' });
    const contentType = req.headers['content-type'] ?? '';
    const contentEncoding = req.headers['content-encoding'] ?? '';
    if (classifyBody(contentType, contentEncoding, body) === undefined) {
      return send(res, 415, {
        error: 'unsupported-media-type',
        message: 'send application/tlsrpt+gzip or application/tlsrpt+json (gzip or identity encoding)',
      });
    }
    const forwardedHeader = req.headers[FORWARDED_HEADER];
    const forwardedBy = (Array.isArray(forwardedHeader) ? forwardedHeader.join(', ') : (forwardedHeader ?? '')).slice(
      0,
      200,
    );
    const job: ReportJobInput = {
      v: 1,
      receiptId: randomUUID(),
      receivedAt: new Date().toISOString(),
      channel: 'https',
      remoteAddress: req.socket.remoteAddress ?? '',
      userAgent: (req.headers['user-agent'] ?? '').slice(0, 1000),
      contentType: contentType.slice(0, 1000),
      contentEncoding: contentEncoding.slice(0, 200),
      path: (req.url ?? '').slice(0, 4000),
      bodyBase64: body.toString('base64'),
      // Forwarded by a deployment (ours or another): stored, never forwarded again.
      meta: forwardedBy ? { forwardedBy } : {},
    };
    try {
      await enqueueReport(queue, job, config.HTTP_ENQUEUE_TIMEOUT_MS, (removed) =>
        logger.warn({ receiptId: job.receiptId, removed }, 'a job answered 503 reached Redis late; removing it'),
      );
    } catch (err) {
      if (!(err instanceof QueueUnavailableError)) throw err;
      logger.warn({ err }, 'queue unavailable; answering 503');
      return send(
        res,
        503,
        { error: 'unavailable', message: 'the report could not be stored; retry later' },
        { 'retry-after': '60' },
      );
    }
    logger.debug({ receiptId: job.receiptId, bytes: body.length }, 'report accepted');
    metrics.reportsReceived.inc({ channel: 'https' });
    send(res, 202, { status: 'accepted', receiptId: job.receiptId });
  };

  const handler = (req: IncomingMessage, res: ServerResponse): Promise<void> | void => {
    const target = parseTarget(req.url);
    if (!target) return send(res, 400, { error: 'bad-request', message: 'the request target is not a valid URL' });
    if (isReportPath(target.pathname, config.HTTP_PATH)) return handleReport(req, res);
    send(res, 404, { error: 'not-found', message: `reports go to POST ${config.HTTP_PATH}` });
  };
  // Metrics and health are on HTTP_METRICS_PORT (main.ts), not on this internet-facing port.
  const withOps = guarded(handler, logger, 'the report was not stored; retry later');
  // Node checks request and header timeouts every 30 s by default: a slow or lying client would hold its
  // connection up to that much longer than the timeout says.
  const timeouts = { connectionsCheckingInterval: Math.max(250, Math.min(5_000, config.HTTP_REQUEST_TIMEOUT_MS / 4)) };
  const server = deps.tls
    ? createHttpsServer(
        // A client that connects and never finishes the handshake is dropped well before Node's 120 s default.
        {
          key: deps.tls.key,
          cert: deps.tls.cert,
          minVersion: 'TLSv1.2',
          handshakeTimeout: Math.min(10_000, config.HTTP_REQUEST_TIMEOUT_MS),
          ...timeouts,
        },
        withOps,
      )
    : createHttpServer(timeouts, withOps);
  server.requestTimeout = config.HTTP_REQUEST_TIMEOUT_MS;
  server.headersTimeout = Math.min(20_000, config.HTTP_REQUEST_TIMEOUT_MS);
  server.keepAliveTimeout = 5_000;
  server.maxConnections = config.HTTP_MAX_CONNECTIONS;
  // One address cannot hold all the connections (idle or slow clients): past its share, new ones are closed.
  // Counted at the TCP level, so connections that never even start TLS are held to the share too.
  server.on('connection', (socket: import('node:net').Socket) => {
    const address = socket.remoteAddress ?? '';
    if (!connections.acquire(address)) {
      socket.destroy();
      return;
    }
    socket.once('close', () => connections.release(address));
  });
  return server;
}
