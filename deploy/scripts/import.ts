// npm run import -- [--dry-run] [--wait] [--no-dkim] <path>…: backfill from files, mbox files and Maildir folders
// (recursively). Every report goes through the queue and the worker like any other channel (channel `import`):
// report files (.json, .json.gz, .gz, .zip) as bodies, mail (.eml, mbox, Maildir) through the SMTP receiver's own
// extraction. Receipt ids come from the content, so running it again queues nothing twice.
import { createHash } from 'node:crypto';
import { readdir, readFile, stat } from 'node:fs/promises';
import { Resolver } from 'node:dns/promises';
import { basename, join } from 'node:path';
import { parseArgs } from 'node:util';
import { createClickHouse } from '../../services/common/clickhouse.ts';
import { loadConfig } from '../../services/common/config.ts';
import { extractReports, MailRejectedError, unzipCapped } from '../../services/common/intake/extract.ts';
import { mailDkim, mailJobs, unverifiedDkim } from '../../services/common/intake/mail-jobs.ts';
import { splitMbox } from '../../services/common/intake/mbox.ts';
import { createReportQueue, queueOnce } from '../../services/common/queue.ts';
import { closeRedis, createRedis } from '../../services/common/redis.ts';
import { quoteString } from '../../services/common/sql.ts';
import type { ReportJobInput } from '../../schemas/job.ts';
import type { DNSResolver } from '../../services/common/intake/dkim.ts';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    'dry-run': { type: 'boolean', default: false },
    wait: { type: 'boolean', default: false },
    'no-dkim': { type: 'boolean', default: false },
  },
});
if (positionals.length === 0) {
  console.error('usage: npm run import -- [--dry-run] [--wait] [--no-dkim] <file|mbox|Maildir|folder>…');
  process.exit(2);
}

const config = loadConfig();
const ch = createClickHouse(config);
const connection = createRedis(config.REDIS_URL, 'producer');
const queue = createReportQueue(connection, config.QUEUE_NAME);
const limits = {
  maxMimeParts: config.SMTP_MAX_MIME_PARTS,
  maxUnzippedBytes: config.SMTP_MAX_UNZIPPED_BYTES,
  maxZipEntries: config.SMTP_MAX_ZIP_ENTRIES,
};
// Old mail's DKIM keys may be gone, and a lookup must not hang the import: short timeouts, one try.
const dns = new Resolver({ timeout: 3000, tries: 1 });
const resolver: DNSResolver = async (name, rrtype) => {
  if (rrtype !== 'TXT') throw Object.assign(new Error(`no ${rrtype} lookups on import`), { code: 'ENOTFOUND' });
  return await dns.resolveTxt(name);
};

const counts = { read: 0, reports: 0, queued: 0, alreadyStored: 0, alreadyQueued: 0, notReport: 0, refused: 0 };
const reasons = new Map<string, number>();
const queuedIds: string[] = [];
const note = (reason: string): void => void reasons.set(reason, (reasons.get(reason) ?? 0) + 1);
const idOf = (bytes: Buffer | string): string => createHash('sha256').update(bytes).digest('hex').slice(0, 40);

/** A unit of input: one report body or one message, with where it came from. */
type Unit = { kind: 'report'; bytes: Buffer; source: string } | { kind: 'message'; bytes: Buffer; source: string };

async function* units(path: string): AsyncGenerator<Unit> {
  const info = await stat(path);
  if (info.isDirectory()) {
    const entries = (await readdir(path)).sort();
    if (entries.includes('cur') && entries.includes('new')) {
      for (const sub of ['cur', 'new'])
        for (const name of (await readdir(join(path, sub))).sort())
          yield { kind: 'message', bytes: await readFile(join(path, sub, name)), source: join(path, sub, name) };
      return;
    }
    for (const name of entries) yield* units(join(path, name));
    return;
  }
  const bytes = await readFile(path);
  const name = basename(path).toLowerCase();
  if (/\.(json|json\.gz|gz)$/.test(name)) {
    yield { kind: 'report', bytes, source: path };
    return;
  }
  if (name.endsWith('.zip')) {
    try {
      for (const e of unzipCapped(bytes, limits.maxUnzippedBytes, limits.maxZipEntries))
        yield { kind: 'report', bytes: e.content, source: `${path}/${e.name}` };
    } catch (err) {
      counts.read++;
      counts.refused++;
      note(err instanceof MailRejectedError ? err.message : 'broken zip archive');
    }
    return;
  }
  if (bytes.subarray(0, 5).toString('latin1') === 'From ') {
    for (const [i, message] of splitMbox(bytes).entries())
      yield { kind: 'message', bytes: message, source: `${path}#${i + 1}` };
    return;
  }
  yield { kind: 'message', bytes, source: path };
}

async function jobsOf(unit: Unit): Promise<ReportJobInput[] | undefined> {
  const receivedAt = new Date().toISOString();
  if (unit.kind === 'report') {
    return [
      {
        v: 1,
        receiptId: `import-${idOf(unit.bytes)}`,
        receivedAt,
        channel: 'import',
        path: unit.source.slice(0, 4000),
        contentType: unit.source.endsWith('.json') ? 'application/tlsrpt+json' : 'application/tlsrpt+gzip',
        bodyBase64: unit.bytes.toString('base64'),
        meta: { file: unit.source },
      },
    ];
  }
  let mail;
  try {
    mail = await extractReports(unit.bytes, limits);
  } catch (err) {
    counts.refused++;
    note(err instanceof MailRejectedError ? err.message : 'not a MIME message');
    return undefined;
  }
  if (mail.parts.length === 0) {
    counts.notReport++;
    return undefined;
  }
  const dkim = values['no-dkim']
    ? unverifiedDkim('not verified (npm run import --no-dkim)')
    : await mailDkim(unit.bytes, mail, resolver);
  const message = idOf(unit.bytes);
  return mailJobs(mail, dkim, {
    channel: 'import',
    receivedAt,
    remoteAddress: '',
    envelope: { from: '', to: [], helo: '', tlsProtocol: '', tlsCipher: '' },
    dkimPolicy: 'record',
    receiptId: (part) => `import-${message}-${part}`,
  }).map((job) => ({ ...job, path: unit.source.slice(0, 4000), meta: { file: unit.source } }));
}

/** The receipt ids among `ids` that ClickHouse already holds. */
async function storedIds(ids: string[]): Promise<Set<string>> {
  if (ids.length === 0) return new Set();
  const result = await ch.query({
    query: `SELECT DISTINCT receipt_id FROM receipts WHERE receipt_id IN (${ids.map(quoteString).join(', ')})`,
    format: 'JSONEachRow',
  });
  return new Set((await result.json<{ receipt_id: string }>()).map((r) => r.receipt_id));
}

/** Bytes of every file under the paths: the progress line's ETA goes by bytes read, whatever their shape. */
async function totalBytes(path: string): Promise<number> {
  const info = await stat(path);
  if (!info.isDirectory()) return info.size;
  let sum = 0;
  for (const name of await readdir(path)) if (name !== 'tmp') sum += await totalBytes(join(path, name));
  return sum;
}

const tty = process.stderr.isTTY;
const started = Date.now();
let lastLine = 0;
let bytesRead = 0;
let bytesTotal = 0;
for (const path of positionals) bytesTotal += await totalBytes(path);

function progress(final = false): void {
  const now = Date.now();
  if (!final && now - lastLine < (tty ? 200 : 5000)) return;
  lastLine = now;
  const seconds = Math.max(0.001, (now - started) / 1000);
  // Unpacked zip entries count more bytes than their file: the share stops short of done until it is.
  const share = final ? 1 : Math.min(0.99, bytesRead / Math.max(1, bytesTotal));
  const eta = share > 0 ? (seconds / share) * (1 - share) : 0;
  const line =
    `${counts.read} read, ${counts.reports} reports, ${counts.queued} queued, ` +
    `${(counts.read / seconds).toFixed(0)}/s, ${(share * 100).toFixed(0)}%, ETA ${eta.toFixed(0)} s`;
  if (tty) process.stderr.write(`\r${line}${final ? '\n' : ''}`);
  else process.stderr.write(`${line}\n`);
}

for (const path of positionals) {
  for await (const unit of units(path)) {
    counts.read++;
    bytesRead += unit.bytes.length;
    const jobs = await jobsOf(unit);
    progress();
    if (!jobs) continue;
    counts.reports += jobs.length;
    const stored = await storedIds(jobs.map((j) => j.receiptId));
    for (const job of jobs) {
      if (stored.has(job.receiptId)) {
        counts.alreadyStored++;
        continue;
      }
      if ((await queueOnce(queue, job, values['dry-run'])) === 'already-queued') {
        counts.alreadyQueued++;
        continue;
      }
      counts.queued++;
      queuedIds.push(job.receiptId);
    }
  }
}
progress(true);

const outcomes = new Map<string, number>();
if (values.wait && !values['dry-run'] && queuedIds.length > 0) {
  // Until the worker has a receipt row for every report queued (stored, or rejected with its reason), or for an
  // hour: a worker that is not running leaves the rest `pending` in the summary.
  const deadline = Date.now() + 3600_000;
  for (;;) {
    outcomes.clear();
    for (let i = 0; i < queuedIds.length; i += 1000) {
      const result = await ch.query({
        query: `SELECT if(outcome = 'stored', 'stored', concat('rejected: ', reject_reason)) AS o, count() AS n
                FROM (SELECT receipt_id, argMax(outcome, version) AS outcome, argMax(reject_reason, version) AS reject_reason
                      FROM receipts WHERE receipt_id IN (${queuedIds
                        .slice(i, i + 1000)
                        .map(quoteString)
                        .join(', ')})
                      GROUP BY receipt_id)
                GROUP BY o`,
        format: 'JSONEachRow',
      });
      for (const r of await result.json<{ o: string; n: number | string }>())
        outcomes.set(r.o, (outcomes.get(r.o) ?? 0) + Number(r.n));
    }
    const done = [...outcomes.values()].reduce((a, b) => a + b, 0);
    if (done >= queuedIds.length) break;
    if (Date.now() > deadline) {
      outcomes.set('pending', queuedIds.length - done);
      break;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}

const summary = {
  dryRun: values['dry-run'],
  ...counts,
  ...(reasons.size > 0 ? { refusedReasons: Object.fromEntries(reasons) } : {}),
  ...(outcomes.size > 0 ? { outcomes: Object.fromEntries(outcomes) } : {}),
};
console.log(JSON.stringify(summary));
await queue.close();
await closeRedis(connection);
await ch.close();
