// npm run import: a Maildir and an mbox built from the corpus's report mails, with mail that is not a TLS report
// (a note, a DMARC aggregate report) and report files beside them. Every TLS report is stored once, the rest left
// alone; run again, it queues nothing.
import { execFile } from 'node:child_process';
import { mkdir, open, rm, symlink, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { zipSync } from 'fflate';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { ClickHouseClient } from '../../services/common/clickhouse.ts';
import { splitMbox } from '../../services/common/intake/mbox.ts';
import { createLogger } from '../../services/common/logger.ts';
import { createRedis } from '../../services/common/redis.ts';
import { BatchWriter } from '../../services/worker/batch-writer.ts';
import { createReportWorker } from '../../services/worker/report-worker.ts';
import { corpusEmails, corpusReports } from '../helpers/corpus.ts';
import { DMARC_MAIL, NOTE_MAIL } from '../helpers/mail.ts';
import { queryRows, testConfig, testDatabase, testWriter } from '../helpers/env.ts';
import { configEnv } from '../helpers/services.ts';
import type { Worker } from 'bullmq';

const run = promisify(execFile);
const config = testConfig();
let ch: ClickHouseClient;
let worker: Worker;
let writer: BatchWriter;
let dir: string;

/** The report mails of the corpus (a cron mail without a report is among them). */
const reportMails = () => corpusEmails().filter((e) => !e.file.includes('empty.eml'));

let progressLines = '';
async function importCli(...args: string[]): Promise<Record<string, unknown>> {
  const { stdout, stderr } = await run(
    process.execPath,
    ['--import', 'tsx', 'deploy/scripts/import.ts', '--no-dkim', ...args],
    { cwd: resolve(import.meta.dirname, '../..'), env: { PATH: process.env.PATH ?? '', ...configEnv(config) } },
  );
  progressLines = stderr;
  return JSON.parse(stdout.trim().split('\n').pop()!) as Record<string, unknown>;
}

beforeAll(async () => {
  ch = await testDatabase(config);
  writer = testWriter(config, ch, { maxRows: 1000, maxWaitMs: 20 });
  worker = createReportWorker(config, {
    connection: createRedis(config.REDIS_URL, 'worker'),
    writer,
    logger: createLogger('t', 'silent'),
  });
  dir = join(inject('dataDir'), `import-${config.QUEUE_NAME}`);
  // A Maildir with every report mail, the note and the DMARC report.
  for (const sub of ['cur', 'new', 'tmp']) await mkdir(join(dir, 'Maildir', sub), { recursive: true });
  for (const [i, e] of reportMails().entries())
    await writeFile(join(dir, 'Maildir', i % 2 ? 'cur' : 'new', `${i}.host:2,S`), e.raw);
  await writeFile(join(dir, 'Maildir', 'cur', 'note:2,S'), NOTE_MAIL);
  await writeFile(join(dir, 'Maildir', 'new', 'dmarc'), DMARC_MAIL);
  // The same mails as an mbox (so each report comes twice: counted once), and report files in a folder.
  const mbox = [...reportMails().map((e) => e.raw), NOTE_MAIL]
    .map(
      (m) =>
        `From sender@example.com Mon Nov 30 00:00:00 2026\n${m
          .toString('latin1')
          .replace(/\r\n/g, '\n')
          .replace(/^From /gm, '>From ')}\n`,
    )
    .join('');
  await writeFile(join(dir, 'archive.mbox'), mbox, 'latin1');
  await mkdir(join(dir, 'files', 'nested'), { recursive: true });
  const reports = corpusReports().slice(0, 4);
  await writeFile(join(dir, 'files', 'a.json'), reports[0]!.json);
  await writeFile(join(dir, 'files', 'nested', 'b.json.gz'), gzipSync(reports[1]!.json));
  await writeFile(
    join(dir, 'files', 'c.zip'),
    zipSync({ 'c.json': Buffer.from(reports[2]!.json), 'd.json': Buffer.from(reports[3]!.json) }),
  );
}, 60_000);

afterAll(async () => {
  await worker.close();
  await writer.close();
  await rm(dir, { recursive: true, force: true });
  await ch.command({ query: `DROP DATABASE IF EXISTS ${config.CLICKHOUSE_DATABASE}` });
  await ch.close();
});

describe('npm run import', () => {
  it('splits an mbox, unquoting >From lines', () => {
    const parts = splitMbox(Buffer.from('From a@b Mon\nSubject: 1\n\n>From here\nx\nFrom c@d Tue\nSubject: 2\n\ny\n'));
    expect(parts.map((p) => p.toString())).toEqual(['Subject: 1\n\nFrom here\nx\n', 'Subject: 2\n\ny\n']);
  });

  it('a dry run counts what it would queue and queues nothing', async () => {
    const summary = await importCli('--dry-run', join(dir, 'Maildir'));
    expect(summary).toMatchObject({ dryRun: true, read: reportMails().length + 2, notReport: 2, alreadyStored: 0 });
    expect(summary.queued).toBe(summary.reports);
    // Not a terminal: plain progress lines, the last one complete.
    expect(progressLines.trim().split('\n').pop()).toMatch(
      /^\d+ read, \d+ reports, \d+ queued, \d+\/s, 100%, ETA 0 s$/,
    );
    const [r] = await queryRows<{ n: number }>(ch, 'SELECT count() AS n FROM receipts');
    expect(r!.n).toBe(0);
  });

  it('stores every TLS report of a Maildir, an mbox and report files once; leaves other mail alone; a rerun queues nothing', async () => {
    const first = await importCli('--wait', join(dir, 'Maildir'), join(dir, 'archive.mbox'), join(dir, 'files'));
    const mails = reportMails().length;
    // Maildir: every report mail, the note, the DMARC report; the mbox: the mails again and the note; 4 report files.
    expect(first).toMatchObject({ read: mails + 2 + mails + 1 + 4, notReport: 3, refused: 0 });
    expect((first.outcomes as Record<string, number>).stored).toBe(first.queued);
    const [stored] = await queryRows<{ n: number; distinct: number }>(
      ch,
      "SELECT count() AS n, uniqExact(report_key) AS distinct FROM receipts WHERE outcome = 'stored' AND channel = 'import'",
    );
    // The mbox repeats the Maildir's mails byte for byte but in other line endings: other receipts, the same reports.
    const [reports] = await queryRows<{ n: number }>(ch, 'SELECT count() AS n FROM reports_dedup');
    expect(reports!.n).toBe(stored!.distinct);
    expect(reports!.n).toBeGreaterThanOrEqual(mails);
    const second = await importCli('--wait', join(dir, 'Maildir'), join(dir, 'archive.mbox'), join(dir, 'files'));
    expect(second).toMatchObject({ queued: 0, alreadyStored: first.queued });
    const [again] = await queryRows<{ n: number }>(ch, 'SELECT count() AS n FROM reports_dedup');
    expect(again!.n).toBe(reports!.n);
  });

  it('a hostile file system: links to devices, FIFOs, dangling links and loops, oversized files and a 600 MB mbox', async () => {
    const h = join(dir, 'hostile');
    const mail = reportMails()[0]!.raw.toString('latin1').replace(/\r\n/g, '\n');
    await mkdir(join(h, 'Maildir', 'cur'), { recursive: true });
    await mkdir(join(h, 'Maildir', 'new'), { recursive: true });
    await writeFile(join(h, 'Maildir', 'new', 'real'), mail, 'latin1');
    // A link to /dev/zero grew the import to 9 GB; a FIFO hung it; a dangling link or a loop aborted it.
    await symlink('/dev/zero', join(h, 'zero.json'));
    await run('mkfifo', [join(h, 'fifo.json')]);
    await symlink(join(h, 'Maildir', 'cur', 'nowhere'), join(h, 'Maildir', 'cur', 'dangling'));
    await symlink(join(h, 'Maildir', 'cur', 'loop'), join(h, 'Maildir', 'cur', 'loop'));
    await symlink(h, join(h, 'parent'));
    // A report file over the body limit, sparse: refused by its size, not read.
    const big = await open(join(h, 'big.json'), 'w');
    await big.truncate(config.HTTP_MAX_BODY_BYTES + 1);
    await big.close();
    // 600 MB of one message with no line end (the mbox was read into one string: ERR_STRING_TOO_LONG), then a report
    // mail: sparse, so it costs no disk.
    const mbox = await open(join(h, 'huge.mbox'), 'w');
    await mbox.write('From a@b Mon Nov 30 00:00:00 2026\n');
    await mbox.write(`\nFrom c@d Mon Nov 30 00:00:00 2026\n${mail}\n`, 600 * 1024 * 1024);
    await mbox.close();
    const summary = await importCli('--dry-run', h);
    expect(summary).toMatchObject({ read: 2 + 2 + 5, reports: 2, unreadable: 5, refused: 2 });
    const files = (summary.unreadableFiles as Array<{ file: string; reason: string }>).map((u) => [
      u.file.slice(h.length + 1),
      u.reason,
    ]);
    expect(Object.fromEntries(files)).toEqual({
      'Maildir/cur/dangling': 'a symbolic link, not followed (--follow-symlinks)',
      'Maildir/cur/loop': 'a symbolic link, not followed (--follow-symlinks)',
      'fifo.json': 'not a regular file (a FIFO, socket or device)',
      parent: 'a symbolic link, not followed (--follow-symlinks)',
      'zero.json': 'a symbolic link, not followed (--follow-symlinks)',
    });
    expect(summary.refusedReasons).toEqual({
      [`larger than ${config.HTTP_MAX_BODY_BYTES} bytes`]: 1,
      [`larger than ${config.SMTP_MAX_MESSAGE_BYTES} bytes`]: 1,
    });
    // A link named on the command line is followed (the links found inside it are not).
    expect(await importCli('--dry-run', join(h, 'parent'))).toMatchObject({ reports: 2, unreadable: 5 });
    // Following links, when asked: the device is still no regular file, the loops are reported, the rest read once.
    const followed = await importCli('--dry-run', '--follow-symlinks', h);
    expect(followed).toMatchObject({ reports: 2, unreadable: 5 });
    expect(
      Object.fromEntries(
        (followed.unreadableFiles as Array<{ file: string; reason: string }>).map((u) => [
          u.file.slice(h.length + 1),
          u.reason,
        ]),
      ),
    ).toEqual({
      'Maildir/cur/dangling': 'ENOENT',
      'Maildir/cur/loop': 'ELOOP',
      'fifo.json': 'not a regular file (a FIFO, socket or device)',
      parent: 'a folder already read (a loop of links)',
      'zero.json': 'not a regular file (a FIFO, socket or device)',
    });
  }, 120_000);
});
