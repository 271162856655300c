// The mailbox fetcher as it runs, against our own Dovecot (Debian's dovecot-imapd, started here): a mailbox holding
// the corpus's report mails, a note and a DMARC aggregate report → every TLS report stored exactly, the rest left
// untouched; IDLE delivery; kill -9 in the middle of a batch; a UIDVALIDITY reset; a wrong password; and
// `npm run import -- --imap` reading the same mailbox without marking anything.
import { execFile } from 'node:child_process';
import { rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { gunzipSync } from 'node:zlib';
import type { ImapFlow } from 'imapflow';
import { simpleParser } from 'mailparser';
import type { Worker } from 'bullmq';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { dovecotClient, startDovecot, type Dovecot } from '../../dev/dovecot.ts';
import { freePort } from '../../dev/stack.ts';
import type { ClickHouseClient } from '../../services/common/clickhouse.ts';
import { createLogger } from '../../services/common/logger.ts';
import { createRedis } from '../../services/common/redis.ts';
import { BatchWriter } from '../../services/worker/batch-writer.ts';
import { createReportWorker } from '../../services/worker/report-worker.ts';
import { corpusEmails } from '../helpers/corpus.ts';
import { queryRows, testConfig, testDatabase, until, testWriter } from '../helpers/env.ts';
import { DMARC_MAIL, NOTE_MAIL, reportMail } from '../helpers/mail.ts';
import { configEnv, startService, type RunningService } from '../helpers/services.ts';

const config = testConfig();
const USER = 'reports';
const PASSWORD = 'imap-secret-1';
const FOLDER = 'TLS';
let ch: ClickHouseClient;
let worker: Worker;
let writer: BatchWriter;
let dovecot: Dovecot;
let dir: string;
let caFile: string;

const reportMails = () => corpusEmails().filter((e) => !e.file.includes('empty.eml'));

type Box = Record<string, unknown>;
const mailbox = (over: Box = {}): Box => ({
  name: 'main',
  host: 'localhost',
  port: dovecot.imapPort,
  tls: 'starttls',
  user: USER,
  password: PASSWORD,
  folder: FOLDER,
  caFile,
  // Far longer than any wait below: new mail must come through IDLE.
  pollSeconds: 600,
  ...over,
});

function startFetcher(boxes: Box[]): RunningService {
  const env = configEnv(config, {
    IMAP_MAILBOXES: JSON.stringify(boxes),
    IMAP_VERIFY_DKIM: 'false',
    MAILBOX_METRICS_PORT: 0,
    LOG_LEVEL: 'info',
  });
  return startService('mailbox-fetcher', env);
}

const imap = (): Promise<ImapFlow> => dovecotClient(dovecot, USER);

/** The flags of every message of a folder, by Subject. */
async function flagsOf(folder: string): Promise<Array<{ subject: string; flags: string[] }>> {
  const c = await imap();
  try {
    const lock = await c.getMailboxLock(folder, { readOnly: true });
    try {
      const all = await c.fetchAll('1:*', { envelope: true, flags: true });
      return all.map((m) => ({ subject: m.envelope?.subject ?? '', flags: [...(m.flags ?? [])].sort() }));
    } finally {
      lock.release();
    }
  } finally {
    await c.logout();
  }
}

/** Every policy entry's sessions in the mails, read with mailparser and gunzipped here: independent of our code. */
async function expectedSessions(mails: Buffer[]): Promise<{ reports: number; ok: number; failed: number }> {
  const seen = new Map<string, { ok: number; failed: number }>();
  for (const raw of mails) {
    for (const a of (await simpleParser(raw)).attachments) {
      const bytes = a.content[0] === 0x1f ? gunzipSync(a.content) : a.content;
      const r = JSON.parse(bytes.toString('utf8')) as {
        'organization-name': string;
        'report-id': string;
        policies: Array<{ summary: Record<string, number> }>;
      };
      const sum = (k: string) => r.policies.reduce((x, p) => x + Number(p.summary[k] ?? 0), 0);
      // A report delivered twice counts once.
      seen.set(`${r['organization-name']}\u0000${r['report-id']}`, {
        ok: sum('total-successful-session-count'),
        failed: sum('total-failure-session-count'),
      });
    }
  }
  const all = [...seen.values()];
  return { reports: seen.size, ok: all.reduce((a, x) => a + x.ok, 0), failed: all.reduce((a, x) => a + x.failed, 0) };
}

async function storedSessions(channel: string) {
  const [row] = await queryRows<{ reports: number; ok: number; failed: number }>(
    ch,
    `SELECT uniqExact(report_key) AS reports, sum(successful_sessions) AS ok, sum(failed_sessions) AS failed
     FROM policy_results_dedup WHERE report_key IN
       (SELECT report_key FROM receipts WHERE channel = '${channel}' AND outcome = 'stored')`,
  );
  return row!;
}

const imapReceipts = async () =>
  (
    await queryRows<{ n: number }>(
      ch,
      "SELECT uniqExact(receipt_id) AS n FROM receipts WHERE channel = 'imap' AND outcome = 'stored'",
    )
  )[0]!.n;

let main: RunningService;
let expectedParts = 0;

beforeAll(async () => {
  ch = await testDatabase(config);
  writer = testWriter(config, ch, { maxRows: 1000, maxWaitMs: 20 });
  worker = createReportWorker(config, {
    connection: createRedis(config.REDIS_URL, 'worker'),
    writer,
    logger: createLogger('t', 'silent'),
  });
  dir = join(inject('dataDir'), `dovecot-${config.QUEUE_NAME}`);
  dovecot = await startDovecot({ dir, users: { [USER]: PASSWORD }, log: () => {} });
  caFile = join(dir, 'ca.pem');
  await writeFile(caFile, dovecot.ca);
  const c = await imap();
  await c.mailboxCreate(FOLDER);
  for (const { raw } of reportMails()) await c.append(FOLDER, raw);
  await c.append(FOLDER, NOTE_MAIL);
  await c.append(FOLDER, DMARC_MAIL);
  await c.logout();
  for (const { raw } of reportMails()) expectedParts += (await simpleParser(raw)).attachments.length;
}, 120_000);

afterAll(async () => {
  await main?.stop();
  await worker.close();
  await writer.close();
  await dovecot.stop();
  await rm(dir, { recursive: true, force: true });
  await ch.command({ query: `DROP DATABASE IF EXISTS ${config.CLICKHOUSE_DATABASE}` });
  await ch.close();
});

describe('the mailbox fetcher with a real Dovecot', () => {
  it('stores every TLS report of the mailbox exactly, marks each report mail once queued, leaves other mail alone', async () => {
    main = startFetcher([mailbox()]);
    await until(
      'every report stored',
      async () => ((await imapReceipts()) >= expectedParts ? true : undefined),
      60_000,
    );
    expect(await imapReceipts()).toBe(expectedParts);
    expect(await storedSessions('imap')).toEqual(await expectedSessions(reportMails().map((m) => m.raw)));
    const flags = await until('every report mail marked', async () => {
      const f = await flagsOf(FOLDER);
      return f.filter((m) => m.flags.includes('$TLSRPT-Queued')).length === reportMails().length ? f : undefined;
    });
    expect(flags.find((m) => m.subject === 'lunch')!.flags).toEqual([]);
    expect(flags.find((m) => m.subject.startsWith('Report domain: example.com Submitter: google.com'))!.flags).toEqual(
      [],
    );
    expect(main.output()).toMatch(/reading mailbox/);
  });

  it('takes a new message within seconds, through IDLE (polling is set to 10 minutes)', async () => {
    const c = await imap();
    await c.append(
      FOLDER,
      reportMail({
        reports: [
          {
            json: JSON.stringify({
              'organization-name': 'Idle Org',
              'date-range': { 'start-datetime': '2026-11-01T00:00:00Z', 'end-datetime': '2026-11-01T23:59:59Z' },
              'contact-info': 'x@idle.example',
              'report-id': 'idle-1',
              policies: [
                {
                  policy: { 'policy-type': 'no-policy-found', 'policy-domain': 'idle.example' },
                  summary: { 'total-successful-session-count': 41, 'total-failure-session-count': 1 },
                },
              ],
            }),
          },
        ],
      }),
    );
    await c.logout();
    await until(
      'the new report stored',
      async () =>
        (
          await queryRows<{ n: number }>(
            ch,
            // Its receipt too (a report's last row): the next test counts by receipts.
            `SELECT count() AS n FROM receipts WHERE channel = 'imap' AND outcome = 'stored' AND report_key IN
               (SELECT report_key FROM policy_results_dedup WHERE policy_domain = 'idle.example' AND successful_sessions = 41)`,
          )
        )[0]!.n === 1 || undefined,
      15_000,
    );
  });

  it('after a UIDVALIDITY reset reads the folder again and counts nothing twice', async () => {
    await main.stop();
    const before = await storedSessions('imap');
    const receiptsBefore = await imapReceipts();
    const c = await imap();
    await c.mailboxDelete(FOLDER);
    await c.mailboxCreate(FOLDER);
    for (const { raw } of reportMails()) await c.append(FOLDER, raw);
    await c.append(FOLDER, NOTE_MAIL);
    await c.logout();
    main = startFetcher([mailbox()]);
    await until(
      'the new folder marked',
      async () =>
        (await flagsOf(FOLDER)).filter((m) => m.flags.includes('$TLSRPT-Queued')).length === reportMails().length ||
        undefined,
    );
    expect(main.output()).toMatch(/UIDVALIDITY changed/);
    await new Promise((r) => setTimeout(r, 1000));
    expect(await storedSessions('imap')).toEqual(before);
    expect(await imapReceipts()).toBe(receiptsBefore);
  });

  it('killed with SIGKILL in the middle of a batch and started again: nothing lost, nothing counted twice', async () => {
    const c = await imap();
    await c.mailboxCreate('Bulk');
    const mails: Buffer[] = [];
    for (let i = 0; i < 150; i++) {
      const mail = reportMail({
        reports: [
          {
            json: JSON.stringify({
              'organization-name': 'Bulk Org',
              'date-range': { 'start-datetime': '2026-11-02T00:00:00Z', 'end-datetime': '2026-11-02T23:59:59Z' },
              'contact-info': 'x@bulk.example',
              'report-id': `bulk-${i}`,
              policies: [
                {
                  policy: { 'policy-type': 'no-policy-found', 'policy-domain': 'bulk.example' },
                  summary: { 'total-successful-session-count': 100 + i, 'total-failure-session-count': i % 3 },
                },
              ],
            }),
          },
        ],
      });
      mails.push(mail);
      await c.append('Bulk', mail);
    }
    await c.logout();
    const bulk = mailbox({ name: 'bulk', port: dovecot.imapsPort, tls: 'implicit', folder: 'Bulk', mark: 'seen' });
    const redis = createRedis(config.REDIS_URL, 'worker');
    try {
      let first = startFetcher([bulk]);
      // Killed once it has queued some of the mailbox, well before the end.
      await until(
        'part of the mailbox read',
        async () => (Number(await redis.hget(`${config.QUEUE_NAME}:imap:bulk`, 'lastUid')) >= 10 ? true : undefined),
        30_000,
      );
      first.child.kill('SIGKILL');
      await new Promise((r) => first.child.once('exit', r));
      const uidAtKill = Number(await redis.hget(`${config.QUEUE_NAME}:imap:bulk`, 'lastUid'));
      expect(uidAtKill).toBeLessThan(150);
      first = startFetcher([bulk]);
      // Every receipt written (the receipts row comes last of a report's rows), then the figures.
      const sums = await until(
        'all 150 stored',
        async () => {
          const [row] = await queryRows<{ n: number; ok: number; failed: number; receipts: number }>(
            ch,
            `SELECT count() AS n, sum(successful_sessions) AS ok, sum(failed_sessions) AS failed,
               (SELECT uniqExact(receipt_id) FROM receipts WHERE outcome = 'stored' AND meta LIKE '%"mailbox":"bulk"%') AS receipts
             FROM policy_results_dedup WHERE policy_domain = 'bulk.example'`,
          );
          return row!.receipts >= 150 && row!.n >= 150 ? row : undefined;
        },
        60_000,
      );
      const expected = await expectedSessions(mails);
      expect(sums).toEqual({ n: 150, ok: expected.ok, failed: expected.failed, receipts: 150 });
      await until(
        'every bulk message marked \\Seen',
        async () => (await flagsOf('Bulk')).every((m) => m.flags.includes('\\Seen')) || undefined,
      );
      await first.stop();
    } finally {
      redis.disconnect();
    }
  });

  it('a wrong password: one clear error line, no crash loop, still ready', async () => {
    const port = await freePort();
    const env = configEnv(config, {
      IMAP_MAILBOXES: JSON.stringify([mailbox({ name: 'wrong', password: 'not-the-password' })]),
      MAILBOX_METRICS_PORT: port,
      LOG_LEVEL: 'info',
    });
    const svc = startService('mailbox-fetcher', env);
    try {
      await until('the login refused', async () => (/IMAP login refused/.test(svc.output()) ? true : undefined));
      await new Promise((r) => setTimeout(r, 3000));
      expect(svc.child.exitCode).toBeNull();
      expect(svc.output().match(/IMAP login refused/g)).toHaveLength(1);
      expect((await fetch(`http://127.0.0.1:${port}/readyz`)).status).toBe(200);
      const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      expect(metrics).toMatch(/tlsrpt_mailbox_errors_total\{[^}]*kind="authentication"[^}]*\} 1/);
    } finally {
      expect(await svc.stop()).toBe(0);
    }
  });

  it('npm run import -- --imap reads the mailbox without marking anything, and stores nothing twice', async () => {
    await main.stop();
    const before = await storedSessions('imap');
    const run = promisify(execFile);
    const { stdout } = await run(
      process.execPath,
      ['--import', 'tsx', 'deploy/scripts/import.ts', '--no-dkim', '--wait', '--imap', 'main', '--since', '2000-01-01'],
      {
        cwd: resolve(import.meta.dirname, '../..'),
        env: {
          PATH: process.env.PATH ?? '',
          ...configEnv(config, { IMAP_MAILBOXES: JSON.stringify([mailbox()]) }),
        },
      },
    );
    const summary = JSON.parse(stdout.trim().split('\n').pop()!) as Record<string, number>;
    expect(summary).toMatchObject({ read: reportMails().length + 1, reports: expectedParts, notReport: 1, refused: 0 });
    const flags = await flagsOf(FOLDER);
    expect(flags.find((m) => m.subject === 'lunch')!.flags).toEqual([]);
    // The same reports, now also received through `import`: each still counts once.
    expect(await storedSessions('import')).toEqual(await expectedSessions(reportMails().map((m) => m.raw)));
    expect(await storedSessions('imap')).toEqual(before);
  });
});
