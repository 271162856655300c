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
import { MailRejectedError, unzipCapped } from '../../services/common/intake/extract.ts';
import { messageJobs } from '../../services/common/intake/message.ts';
import { createLogger } from '../../services/common/logger.ts';
import { connectMailbox } from '../../services/mailbox-fetcher/fetcher.ts';
import { loadMailboxes } from '../../services/mailbox-fetcher/mailboxes.ts';
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
    imap: { type: 'string' },
    since: { type: 'string' },
  },
});
if ((positionals.length === 0) === (values.imap === undefined) || (values.since && !values.imap)) {
  console.error(
    'usage: npm run import -- [--dry-run] [--wait] [--no-dkim] <file|mbox|Maildir|folder>…\n' +
      '       npm run import -- [--dry-run] [--wait] [--no-dkim] --imap <mailbox name> [--since YYYY-MM-DD]',
  );
  process.exit(2);
}
if (values.since && !/^\d{4}-\d{2}-\d{2}$/.test(values.since)) {
  console.error('--since: a date YYYY-MM-DD');
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

/**
 * The messages of a configured mailbox (IMAP_MAILBOXES), received since a date, opened read-only: nothing is marked,
 * moved or set \\Seen, whatever the mailbox fetcher's own settings say.
 */
async function* imapUnits(name: string, since: string | undefined): AsyncGenerator<Unit> {
  const box = (await loadMailboxes(config.IMAP_MAILBOXES, config.IMAP_MAILBOXES_FILE)).find((m) => m.name === name);
  if (!box) throw new Error(`no mailbox named ${name} in IMAP_MAILBOXES`);
  const client = await connectMailbox(box, createLogger('import', 'warn'));
  try {
    const lock = await client.getMailboxLock(box.folder, { readOnly: true });
    try {
      const found = await client.search(since ? { since: new Date(`${since}T00:00:00Z`) } : { all: true }, {
        uid: true,
      });
      const uids = (found || []).sort((a, b) => a - b);
      messagesTotal = uids.length;
      for (let i = 0; i < uids.length; i += 50) {
        const batch = await client.fetchAll(
          uids.slice(i, i + 50).join(','),
          { uid: true, source: true },
          { uid: true },
        );
        for (const m of batch)
          if (m.source) yield { kind: 'message', bytes: m.source, source: `imap:${name}/${box.folder}/${m.uid}` };
      }
    } finally {
      lock.release();
    }
  } finally {
    await client.logout().catch(() => client.close());
  }
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
  const outcome = await messageJobs(unit.bytes, {
    limits,
    channel: 'import',
    dkim: !values['no-dkim'],
    resolver,
    receivedAt,
  });
  if (outcome.kind === 'refused') {
    counts.refused++;
    note(outcome.reason);
    return undefined;
  }
  if (outcome.kind === 'not-report') {
    counts.notReport++;
    return undefined;
  }
  return outcome.jobs.map((job) => ({ ...job, path: unit.source.slice(0, 4000), meta: { file: unit.source } }));
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
/** Over IMAP the count of messages is known up front, their bytes are not: the share goes by messages. */
let messagesTotal: number | undefined;
for (const path of positionals) bytesTotal += await totalBytes(path);
const sources: Array<AsyncGenerator<Unit>> = values.imap
  ? [imapUnits(values.imap, values.since)]
  : positionals.map((path) => units(path));

function progress(final = false): void {
  const now = Date.now();
  if (!final && now - lastLine < (tty ? 200 : 5000)) return;
  lastLine = now;
  const seconds = Math.max(0.001, (now - started) / 1000);
  // Unpacked zip entries count more bytes than their file: the share stops short of done until it is.
  const done =
    messagesTotal === undefined ? bytesRead / Math.max(1, bytesTotal) : counts.read / Math.max(1, messagesTotal);
  const share = final ? 1 : Math.min(0.99, done);
  const eta = share > 0 ? (seconds / share) * (1 - share) : 0;
  const line =
    `${counts.read} read, ${counts.reports} reports, ${counts.queued} queued, ` +
    `${(counts.read / seconds).toFixed(0)}/s, ${(share * 100).toFixed(0)}%, ETA ${eta.toFixed(0)} s`;
  if (tty) process.stderr.write(`\r${line}${final ? '\n' : ''}`);
  else process.stderr.write(`${line}\n`);
}

/**
 * Queues a chunk of jobs: one ClickHouse look-up for the receipts already stored, then every job side by side (Redis
 * pipelines them), so a round trip is paid per chunk, not per message.
 */
async function queueChunk(jobs: ReportJobInput[]): Promise<void> {
  const stored = await storedIds(jobs.map((j) => j.receiptId));
  const fresh = jobs.filter((j) => !stored.has(j.receiptId));
  counts.alreadyStored += jobs.length - fresh.length;
  // The same message twice in one chunk (a Maildir and an mbox of it): queued once, the other already queued.
  const unique = [...new Map(fresh.map((j) => [j.receiptId, j])).values()];
  counts.alreadyQueued += fresh.length - unique.length;
  const results = await Promise.all(unique.map((job) => queueOnce(queue, job, values['dry-run'])));
  for (const [i, result] of results.entries()) {
    if (result === 'already-queued') counts.alreadyQueued++;
    else {
      counts.queued++;
      queuedIds.push(unique[i]!.receiptId);
    }
  }
}

const CHUNK = 200;
let pending: ReportJobInput[] = [];
for (const source of sources) {
  for await (const unit of source) {
    counts.read++;
    bytesRead += unit.bytes.length;
    const jobs = await jobsOf(unit);
    progress();
    if (!jobs) continue;
    counts.reports += jobs.length;
    pending.push(...jobs);
    if (pending.length >= CHUNK) {
      await queueChunk(pending);
      pending = [];
    }
  }
}
if (pending.length > 0) await queueChunk(pending);
progress(true);

const outcomes = new Map<string, number>();
if (values.wait && !values['dry-run'] && queuedIds.length > 0) {
  // Until the worker has a receipt row for every report queued (stored, or rejected with its reason), or for an
  // hour: a worker that is not running leaves the rest `pending` in the summary. A stored receipt counts once its
  // report's row is there too: the worker writes `reports` and `receipts` side by side, and either may show first.
  const deadline = Date.now() + 3600_000;
  for (;;) {
    outcomes.clear();
    for (let i = 0; i < queuedIds.length; i += 500) {
      const ids = `receipt_id IN (${queuedIds
        .slice(i, i + 500)
        .map(quoteString)
        .join(', ')})`;
      const result = await ch.query({
        query: `SELECT if(outcome = 'stored', 'stored', concat('rejected: ', reject_reason)) AS o, count() AS n
                FROM (SELECT receipt_id, argMax(outcome, version) AS outcome, argMax(reject_reason, version) AS reject_reason,
                             argMax(report_key, version) AS key
                      FROM receipts WHERE ${ids}
                      GROUP BY receipt_id)
                WHERE outcome != 'stored'
                   OR key IN (SELECT report_key FROM reports
                              WHERE report_key IN (SELECT report_key FROM receipts WHERE ${ids}))
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
