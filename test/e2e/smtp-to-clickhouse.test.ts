// End to end over SMTP: real clients (nodemailer's SMTP transport, and swaks) deliver over STARTTLS, verifying our
// certificate, to the running receiver; the worker stores the reports; we read them back from ClickHouse.
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gunzipSync } from 'node:zlib';
import type { Worker } from 'bullmq';
import { simpleParser } from 'mailparser';
import { createTransport } from 'nodemailer';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { freePort, startRedis, type ManagedProcess } from '../../dev/stack.ts';
import type { ClickHouseClient } from '../../services/common/clickhouse.ts';
import { createLogger } from '../../services/common/logger.ts';
import { openReportQueue } from '../../services/common/queue.ts';
import { createRedis } from '../../services/common/redis.ts';
import { quoteString } from '../../services/common/clickhouse-compat.ts';
import { devCertPaths, loadTlsCredentials, type TlsCredentials } from '../../services/common/tls.ts';
import { createSmtpReceiver, type SmtpReceiver } from '../../services/smtp-receiver/server.ts';
import { BatchWriter } from '../../services/worker/batch-writer.ts';
import { createReportWorker } from '../../services/worker/report-worker.ts';
import { corpusEmails, corpusReports } from '../helpers/corpus.ts';
import { closeWorkerSetup, queryRows, testConfig, testDatabase, until, testWriter } from '../helpers/env.ts';
import { makeKey, reportMail, sign, testResolver } from '../helpers/mail.ts';
import { configEnv, startService } from '../helpers/services.ts';

const run = promisify(execFile);
const key = makeKey('sender.example');

interface Stack {
  config: ReturnType<typeof testConfig>;
  ch: ClickHouseClient;
  receiver: SmtpReceiver;
  worker: Worker;
  writer: BatchWriter;
  port: number;
  replies: number[];
  close(): Promise<void>;
}

/** Receiver and worker in this process (the receiver gets the test DNS resolver), on real Redis and ClickHouse. */
async function startStack(tls: TlsCredentials, overrides: Record<string, string> = {}): Promise<Stack> {
  const config = testConfig({
    SMTP_RECIPIENTS: 'tlsrpt@localhost,@reports.example',
    SMTP_MAX_MESSAGE_BYTES: String(512 * 1024),
    ...overrides,
  });
  const ch = await testDatabase(config);
  const producer = createRedis(config.REDIS_URL, 'producer');
  const consumer = createRedis(config.REDIS_URL, 'worker');
  producer.on('error', () => {});
  const queue = await openReportQueue(producer, config.QUEUE_NAME);
  consumer.on('error', () => {});
  const replies: number[] = [];
  const logger = createLogger('test', 'silent');
  const receiver = createSmtpReceiver(config, {
    queue,
    logger,
    tls,
    resolver: testResolver([key]),
    onReply: (c) => replies.push(c),
  });
  const port = await freePort();
  await new Promise<void>((r) => receiver.server.listen(port, '127.0.0.1', () => r()));
  const writer = testWriter(config, ch, { maxRows: 5000, maxWaitMs: 50 });
  const worker = createReportWorker(config, { connection: consumer, writer, logger });
  worker.on('error', () => {});
  return {
    config,
    ch,
    receiver,
    worker,
    writer,
    port,
    replies,
    async close() {
      await receiver.close();
      await closeWorkerSetup({ config, ch, worker, writer, queue, connections: [producer, consumer] });
    },
  };
}

let tls: TlsCredentials;
let stack: Stack;

beforeAll(async () => {
  tls = await loadTlsCredentials({
    TLS_CERT_FILE: '',
    TLS_KEY_FILE: '',
    DATA_DIR: join(inject('dataDir'), `smtp-${randomUUID()}`),
  });
  stack = await startStack(tls);
});
afterAll(async () => stack.close());

function transport(port: number) {
  return createTransport({
    host: '127.0.0.1',
    port,
    secure: false,
    requireTLS: true,
    tls: { ca: tls.cert, servername: 'localhost' },
  });
}

async function deliver(raw: Buffer, to = 'tlsrpt@localhost', port = stack.port, from = 'reporter@sender.example') {
  return await transport(port).sendMail({ envelope: { from, to: [to] }, raw });
}

/** The reports inside a mail, extracted with mailparser directly and gunzipped here: independent of our code. */
async function reportsInside(raw: Buffer): Promise<Array<{ policies: Array<{ summary: Record<string, number> }> }>> {
  const mail = await simpleParser(raw);
  return mail.attachments.map((a) => {
    const bytes = a.content[0] === 0x1f ? gunzipSync(a.content) : a.content;
    return JSON.parse(bytes.toString('utf8')) as { policies: Array<{ summary: Record<string, number> }> };
  });
}

/** The receipts of one delivery, found by its Message-ID, or by its envelope sender (`from`) where given. */
async function receiptsFor(ch: ClickHouseClient, messageId: string, from?: string) {
  return await queryRows<{
    outcome: string;
    report_key: string;
    tls_protocol: string;
    envelope_from: string;
    dkim_result: string;
    attachment_name: string;
    helo: string;
  }>(
    ch,
    `SELECT outcome, report_key, tls_protocol, envelope_from, dkim_result, attachment_name, helo FROM receipts WHERE ${from ? `envelope_from = ${quoteString(from)}` : `message_id = ${quoteString(messageId)}`} ORDER BY attachment_name`,
  );
}

describe('SMTP → ClickHouse', () => {
  it('takes every real report mail over STARTTLS and stores its report with exact counts', async () => {
    // Two corpus mails share a Message-ID: each delivery gets its own envelope sender to tell them apart.
    const mails = corpusEmails()
      .filter((e) => !e.file.includes('empty.eml'))
      .map((m, i) => ({ ...m, from: `reporter+${i}@sender.example` }));
    for (const { file, raw, from } of mails) {
      const info = await deliver(raw, 'tlsrpt@localhost', stack.port, from);
      expect(info.response, file).toMatch(/^250 /);
    }
    for (const { file, raw, from } of mails) {
      const receipts = await until(`${file} stored`, async () => {
        const rows = await receiptsFor(stack.ch, '', from);
        return rows.length > 0 ? rows : undefined;
      });
      expect(
        receipts.map((r) => r.outcome),
        file,
      ).toEqual(['stored']);
      expect(receipts[0]!.tls_protocol, file).toMatch(/^TLSv1\.[23]$/);
      expect(receipts[0]!.envelope_from).toBe(from);
      expect(receipts[0]!.attachment_name).toMatch(/!/);
      // The corpus mails are signed by their real senders, whose keys this sandbox cannot look up.
      expect(['fail', 'temperror', 'none']).toContain(receipts[0]!.dkim_result);
      const [source] = await reportsInside(raw);
      const stored = await queryRows<{ successful_sessions: number; failed_sessions: number }>(
        stack.ch,
        `SELECT successful_sessions, failed_sessions FROM policy_results_dedup WHERE report_key = ${quoteString(receipts[0]!.report_key)} ORDER BY policy_index`,
      );
      expect(stored, file).toEqual(
        source!.policies.map((p) => ({
          successful_sessions: p.summary['total-successful-session-count'] ?? 0,
          failed_sessions: p.summary['total-failure-session-count'] ?? 0,
        })),
      );
    }
  });

  it('stores the DKIM verdict: pass for a mail signed by the submitter', async () => {
    const report = corpusReports().find((r) =>
      r.file.includes('kravietz__tlsrpt-rs__tlsrpt_fixtures_rfc8460.json'),
    )!.json;
    const raw = await sign(
      reportMail({ reports: [{ json: report }], submitter: 'sender.example', domain: 'company-y.example' }),
      key,
    );
    const messageId = (await simpleParser(raw)).messageId ?? '';
    expect((await deliver(raw)).response).toMatch(/^250 /);
    const receipt = await until('stored', async () => (await receiptsFor(stack.ch, messageId))[0]);
    expect(receipt.dkim_result).toBe('pass');
    const [row] = await queryRows<{
      dkim_domain: string;
      dkim_aligned: number;
      dkim_key_tlsrpt: number;
      dkim_selector: string;
    }>(
      stack.ch,
      `SELECT dkim_domain, dkim_aligned, dkim_key_tlsrpt, dkim_selector FROM receipts WHERE message_id = ${quoteString(messageId)}`,
    );
    expect(row).toEqual({
      dkim_domain: 'sender.example',
      dkim_aligned: 1,
      dkim_key_tlsrpt: 1,
      dkim_selector: 'tlsrpt',
    });
  });

  it('several reports in one message become one job each; LF-only messages are fine', async () => {
    const reports = corpusReports();
    const raw = reportMail({
      reports: [{ json: reports[3]!.json }, { json: reports[4]!.json, gzip: false }],
      lineEnding: '\n',
      domain: 'reports.example',
    });
    const messageId = (await simpleParser(raw)).messageId ?? '';
    const info = await deliver(raw, 'anyone@reports.example');
    expect(info.response).toMatch(/^250 .*2 report\(s\) queued/);
    const rows = await until('both stored', async () => {
      const r = await receiptsFor(stack.ch, messageId);
      return r.length === 2 ? r : undefined;
    });
    expect(rows.map((r) => r.outcome)).toEqual(['stored', 'stored']);
  });

  it('refuses unknown recipients (550 5.1.1), oversized mail (552 5.3.4) and mail without a report (554)', async () => {
    await expect(
      deliver(reportMail({ reports: [{ json: '{}' }] }), 'postmaster@elsewhere.example'),
    ).rejects.toMatchObject({ responseCode: 550 });
    const big = reportMail({ reports: [{ json: 'x'.repeat(10), raw: Buffer.alloc(600 * 1024, 7) }] });
    await expect(deliver(big)).rejects.toMatchObject({ responseCode: 552 });
    const cron = corpusEmails().find((e) => e.file.includes('empty.eml'))!.raw;
    const err = (await deliver(cron).catch((e: unknown) => e)) as { responseCode: number; response: string };
    expect(err.responseCode).toBe(554);
    expect(err.response).toMatch(/no TLS report/);
    expect(stack.replies).toEqual(expect.arrayContaining([550, 552, 554]));
    // And the next good mail still goes through.
    expect((await deliver(corpusEmails()[0]!.raw)).response).toMatch(/^250 /);
  });

  it('answers 421 to a transaction begun while shutting down', async () => {
    const other = await startStack(tls);
    const socket = connect(other.port, '127.0.0.1');
    let text = '';
    socket.on('data', (d: Buffer) => (text += d.toString()));
    await until('greeting', async () => (text.includes('220 ') ? true : undefined));
    socket.write('EHLO client.example\r\n');
    await until('ehlo', async () => (text.includes('250 ') ? true : undefined));
    const closing = other.close();
    socket.write('MAIL FROM:<a@sender.example>\r\n');
    await until('421', async () => (/\n421 /.test(text) ? true : undefined));
    socket.destroy();
    await closing;
  });

  it('holds all messages in flight to SMTP_MAX_INFLIGHT_BYTES: past it 451 4.3.1, and the bytes come back after', async () => {
    // 4x a message's size is held while it is read, parsed and queued: 400 KB of budget takes one mail of ~60 KB.
    const other = await startStack(tls, { SMTP_MAX_INFLIGHT_BYTES: String(400 * 1024) });
    const padded = JSON.stringify({ ...(JSON.parse(corpusReports()[0]!.json) as object), pad: 'p'.repeat(120 * 1024) });
    const big = reportMail({ reports: [{ json: padded, gzip: false }] });
    await expect(deliver(big, 'tlsrpt@localhost', other.port)).rejects.toMatchObject({ responseCode: 451 });
    const small = reportMail({ reports: [{ json: corpusReports()[0]!.json }] });
    for (let i = 0; i < 3; i++)
      expect((await deliver(small, 'tlsrpt@localhost', other.port)).response).toMatch(/^250 /);
    await other.close();
  });
});

describe('SMTP when Redis cannot take the job', () => {
  let redis: ManagedProcess;
  let redisPort: number;
  let other: Stack;

  beforeAll(async () => {
    redisPort = await freePort();
    redis = await startRedis({
      dir: join(inject('dataDir'), `redis-smtp-${randomUUID()}`),
      port: redisPort,
      log: () => {},
    });
    other = await startStack(tls, { REDIS_URL: `redis://127.0.0.1:${redisPort}`, SMTP_ENQUEUE_TIMEOUT_MS: '1000' });
  });
  afterAll(async () => {
    await other.close();
    await redis.stop();
  });

  it('answers 451 4.3.0, then takes the same message once Redis is back, and counts it once', async () => {
    const raw = corpusEmails().find((e) => e.file.includes('kravietz__tlsrpt-rs__tlsrpt_fixtures_microsoft1.eml'))!.raw;
    await redis.stop();
    const err = (await deliver(raw, 'tlsrpt@localhost', other.port).catch((e: unknown) => e)) as {
      responseCode: number;
      response: string;
    };
    expect(err.responseCode).toBe(451);
    expect(err.response).toMatch(/4\.3\.0/);
    redis = await startRedis({
      dir: join(inject('dataDir'), `redis-smtp-${randomUUID()}`),
      port: redisPort,
      log: () => {},
    });
    await until('accepted after redis is back', async () => {
      const info = await deliver(raw, 'tlsrpt@localhost', other.port).catch(() => undefined);
      return info?.response.startsWith('250') ? info : undefined;
    });
    // Deliver it once more, as a sender retrying would: still one report.
    await deliver(raw, 'tlsrpt@localhost', other.port);
    const rows = await until('stored twice as receipts', async () => {
      const r = await queryRows<{ c: number }>(other.ch, `SELECT count() AS c FROM receipts WHERE outcome = 'stored'`);
      return r[0]!.c >= 2 ? r : undefined;
    });
    expect(rows[0]!.c).toBe(2);
    const [daily] = await queryRows<{ successful_sessions: number; reports: number }>(
      other.ch,
      `SELECT successful_sessions, reports FROM domain_daily WHERE policy_domain = 'krvtz.net'`,
    );
    expect(daily).toEqual({ successful_sessions: 2, reports: 1 });
  });
});

/** Whether something on the port greets with 220. */
function smtpGreets(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(2000, () => done(false));
    socket.on('error', () => done(false));
    socket.on('data', (d: Buffer) => done(d.toString().startsWith('220')));
  });
}

describe('the smtp-receiver service, driven by swaks', () => {
  it('delivers a real report mail over STARTTLS with certificate verification', async () => {
    const config = testConfig({ SMTP_RECIPIENTS: 'tlsrpt@localhost' });
    const ch = await testDatabase(config);
    const port = await freePort();
    const metricsPort = await freePort();
    const dataDir = join(inject('dataDir'), `swaks-${config.QUEUE_NAME}`);
    await mkdir(dataDir, { recursive: true });
    const env = configEnv(config, {
      SMTP_PORT: port,
      SMTP_HOST: '127.0.0.1',
      DATA_DIR: dataDir,
      LOG_LEVEL: 'warn',
      SMTP_METRICS_PORT: metricsPort,
    });
    const receiver = startService('smtp-receiver', env);
    const worker = startService('worker', env);
    try {
      const cert = devCertPaths(dataDir).cert;
      await until('receiver up', async () => {
        if (receiver.child.exitCode !== null) throw new Error(receiver.output());
        return (await smtpGreets(port)) ? true : undefined;
      });
      const file = join(dataDir, 'mail.eml');
      const { raw } = corpusEmails().find((e) => e.file.includes('mjl-__mox__testdata_tlsreports_microsoft.eml'))!;
      await writeFile(file, raw);
      const { stdout } = await run('swaks', [
        '--server',
        `127.0.0.1:${port}`,
        '--to',
        'tlsrpt@localhost',
        '--from',
        'tlsrpt-noreply@microsoft.com',
        '--data',
        file,
        '--tls',
        '--tls-verify',
        '--tls-ca-path',
        cert,
        '--tls-sni',
        'localhost',
        '--ehlo',
        'mail.example',
      ]);
      expect(stdout).toMatch(/<~\s+250 2\.0\.0 1 report\(s\) queued/);
      const messageId = (await simpleParser(raw)).messageId ?? '';
      const receipt = await until('stored', async () => (await receiptsFor(ch, messageId))[0]);
      expect(receipt).toMatchObject({ outcome: 'stored', helo: 'mail.example' });
      expect(receipt.tls_protocol).toMatch(/^TLSv1\.[23]$/);
      const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      expect(metrics).toMatch(/tlsrpt_smtp_replies_total\{[^}]*code="250"[^}]*\} 1/);
      expect(metrics).toMatch(/tlsrpt_reports_received_total\{[^}]*channel="smtp"[^}]*\} 1/);
      expect((await fetch(`http://127.0.0.1:${metricsPort}/readyz`)).status).toBe(200);
    } finally {
      // Both stopped before either exit code is checked.
      expect(await Promise.all([receiver.stop(), worker.stop()])).toEqual([0, 0]);
      await ch.command({ query: `DROP DATABASE IF EXISTS ${config.CLICKHOUSE_DATABASE}` });
      await ch.close();
    }
  });
});
