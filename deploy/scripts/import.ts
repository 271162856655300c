// npm run import -- [--dry-run] [--wait] [--no-dkim] <path>…: backfill from files, mbox files and Maildir folders
// (recursively). Every report goes through the queue and the worker like any other channel (channel `import`):
// report files (.json, .json.gz, .gz, .zip) as bodies, mail (.eml, mbox, Maildir) through the SMTP receiver's own
// extraction. Receipt ids come from the content, so running it again queues nothing twice.
import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { lstat, open, readdir, stat, type FileHandle } from 'node:fs/promises';
import { Resolver } from 'node:dns/promises';
import { basename, join } from 'node:path';
import { parseArgs } from 'node:util';
import { createClickHouse } from '../../services/common/clickhouse.ts';
import { loadConfig } from '../../services/common/config.ts';
import { MailRejectedError, unzipCapped } from '../../services/common/intake/extract.ts';
import { messageJobs } from '../../services/common/intake/message.ts';
import { createLogger } from '../../services/common/logger.ts';
import { connectMailbox, fetchSources, withDeadline } from '../../services/common/imap.ts';
import { loadMailboxes } from '../../services/common/mailboxes.ts';
import { mboxMessages } from '../../services/common/intake/mbox.ts';
import { createReportQueue, queueOnce } from '../../services/common/queue.ts';
import { closeRedis, createRedis } from '../../services/common/redis.ts';
import { quoteString } from '../../services/common/clickhouse-compat.ts';
import type { ReportJobInput } from '../../schemas/job.ts';
import type { DNSResolver } from '../../services/common/intake/dkim.ts';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    'dry-run': { type: 'boolean', default: false },
    wait: { type: 'boolean', default: false },
    'no-dkim': { type: 'boolean', default: false },
    'follow-symlinks': { type: 'boolean', default: false },
    imap: { type: 'string' },
    since: { type: 'string' },
  },
});
if ((positionals.length === 0) === (values.imap === undefined) || (values.since && !values.imap)) {
  console.error(
    'usage: npm run import -- [--dry-run] [--wait] [--no-dkim] [--follow-symlinks] <file|mbox|Maildir|folder>…\n' +
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

const counts = {
  read: 0,
  reports: 0,
  queued: 0,
  alreadyStored: 0,
  alreadyQueued: 0,
  notReport: 0,
  refused: 0,
  unreadable: 0,
};
/** The first files that could not be read, with why: the summary names them. */
const unreadable: Array<{ file: string; reason: string }> = [];
const reasons = new Map<string, number>();
const queuedIds: string[] = [];
const note = (reason: string): void => void reasons.set(reason, (reasons.get(reason) ?? 0) + 1);
const idOf = (bytes: Buffer | string): string => createHash('sha256').update(bytes).digest('hex').slice(0, 40);

/**
 * A unit of input: one report body or one message, with where it came from; or what could not be read there and why
 * (a file that is no regular file, a link not followed, a read error, a message over the limit): counted, and the
 * import goes on.
 */
type Unit =
  | { kind: 'report' | 'message'; bytes: Buffer; source: string }
  | { kind: 'too-large'; source: string; limit: number }
  | { kind: 'unreadable'; source: string; reason: string };

const errorText = (err: unknown): string =>
  err instanceof Error ? ((err as NodeJS.ErrnoException).code ?? err.message) : String(err);

class Unreadable extends Error {}

/**
 * A regular file opened without following a link (unless `follow`) and without blocking (a FIFO would hang the
 * import), checked to be a regular file on the descriptor itself (no race with a rename between a check and the open).
 */
async function openRegular(path: string, follow: boolean): Promise<{ file: FileHandle; size: number }> {
  const file = await open(path, constants.O_RDONLY | constants.O_NONBLOCK | (follow ? 0 : constants.O_NOFOLLOW));
  const info = await file.stat();
  if (!info.isFile()) {
    await file.close();
    throw new Unreadable('not a regular file');
  }
  return { file, size: info.size };
}

/** An open file's bytes, at most `limit`. */
async function readAll(file: FileHandle, size: number, limit: number): Promise<Buffer> {
  if (size > limit) throw new TooLarge(limit);
  const bytes = Buffer.alloc(size);
  const { bytesRead } = await file.read(bytes, 0, size, 0);
  return bytes.subarray(0, bytesRead);
}

/** A regular file's bytes, at most `limit`. */
async function readRegular(path: string, follow: boolean, limit: number): Promise<Buffer> {
  const { file, size } = await openRegular(path, follow);
  try {
    return await readAll(file, size, limit);
  } finally {
    await file.close();
  }
}

class TooLarge extends Error {
  constructor(readonly limit: number) {
    super(`larger than ${limit} bytes`);
  }
}

/**
 * The mail in a file: one message, or (`as` not 'message' and the file starts as an mbox does) the messages of an
 * mbox, streamed one at a time up to the size the file had when opened (a file that grows, or a device swapped in,
 * cannot make it read for ever). One open for either.
 */
async function* mailUnits(path: string, follow: boolean, as?: 'message'): AsyncGenerator<Unit> {
  const { file, size } = await openRegular(path, follow);
  const limit = config.SMTP_MAX_MESSAGE_BYTES;
  try {
    const head = Buffer.alloc(5);
    const { bytesRead } = await file.read(head, 0, 5, 0);
    if (as === 'message' || head.subarray(0, bytesRead).toString('latin1') !== 'From ') {
      yield { kind: 'message', bytes: await readAll(file, size, limit), source: path };
      return;
    }
    const stream = file.createReadStream({
      start: 0,
      end: Math.max(0, size - 1),
      highWaterMark: 1 << 20,
      autoClose: false,
    });
    let i = 0;
    for await (const m of mboxMessages(stream, limit)) {
      i++;
      if ('bytes' in m) yield { kind: 'message', bytes: m.bytes, source: `${path}#${i}` };
      else yield { kind: 'too-large', source: `${path}#${i}`, limit };
    }
  } finally {
    await file.close();
  }
}

/** One file's units, its failures among them; `follow`: the file may be reached through a link. */
async function* fileUnits(path: string, follow: boolean, as?: 'message'): AsyncGenerator<Unit> {
  const name = basename(path).toLowerCase();
  try {
    if (as !== 'message' && /\.(json|json\.gz|gz)$/.test(name)) {
      yield { kind: 'report', bytes: await readRegular(path, follow, config.HTTP_MAX_BODY_BYTES), source: path };
      return;
    }
    if (as !== 'message' && name.endsWith('.zip')) {
      const bytes = await readRegular(path, follow, config.SMTP_MAX_MESSAGE_BYTES);
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
    yield* mailUnits(path, follow, as);
  } catch (err) {
    if (err instanceof TooLarge) yield { kind: 'too-large', source: path, limit: err.limit };
    else yield { kind: 'unreadable', source: path, reason: errorText(err) };
  }
}

/**
 * The units under a path: folders recursively, a Maildir's cur/ and new/ as messages. Links found inside folders are
 * not followed unless --follow-symlinks (a link to /dev/zero, a loop, a dangling link: each reported, none fatal);
 * a path named on the command line is.
 */
async function* units(path: string, named = false, as?: 'message', seen = new Set<string>()): AsyncGenerator<Unit> {
  let info;
  try {
    info = named || values['follow-symlinks'] ? await stat(path) : await lstat(path);
  } catch (err) {
    yield { kind: 'unreadable', source: path, reason: errorText(err) };
    return;
  }
  if (info.isSymbolicLink()) {
    yield { kind: 'unreadable', source: path, reason: 'a symbolic link, not followed (--follow-symlinks)' };
    return;
  }
  if (info.isDirectory()) {
    // A folder reached twice (links followed into a loop) is read once.
    const id = `${info.dev}:${info.ino}`;
    if (seen.has(id)) {
      yield { kind: 'unreadable', source: path, reason: 'a folder already read (a loop of links)' };
      return;
    }
    seen.add(id);
    let entries: string[];
    try {
      entries = (await readdir(path)).sort();
    } catch (err) {
      yield { kind: 'unreadable', source: path, reason: errorText(err) };
      return;
    }
    if (entries.includes('cur') && entries.includes('new')) {
      for (const sub of ['cur', 'new']) yield* units(join(path, sub), false, 'message', seen);
      return;
    }
    for (const name of entries) yield* units(join(path, name), false, as, seen);
    return;
  }
  if (!info.isFile()) {
    yield { kind: 'unreadable', source: path, reason: 'not a regular file (a FIFO, socket or device)' };
    return;
  }
  yield* fileUnits(path, named || values['follow-symlinks'], as);
}

/**
 * The messages of a configured mailbox (IMAP_MAILBOXES), received since a date, opened read-only: nothing is marked,
 * moved or set \\Seen, whatever the mailbox fetcher's own settings say.
 */
async function* imapUnits(name: string, since: string | undefined): AsyncGenerator<Unit> {
  const box = (await loadMailboxes(config.IMAP_MAILBOXES, config.IMAP_MAILBOXES_FILE)).find((m) => m.name === name);
  if (!box) throw new Error(`no mailbox named ${name} in IMAP_MAILBOXES`);
  const imap = {
    maxMessageBytes: config.SMTP_MAX_MESSAGE_BYTES,
    commandTimeoutMs: config.IMAP_COMMAND_TIMEOUT_SECONDS * 1000,
  };
  const client = await connectMailbox(box, createLogger('import', 'warn'), imap);
  try {
    const lock = await withDeadline(
      client,
      `SELECT ${box.folder}`,
      imap.commandTimeoutMs,
      client.getMailboxLock(box.folder, { readOnly: true }),
    );
    try {
      const query = since ? { since: new Date(`${since}T00:00:00Z`) } : { all: true };
      const found = await withDeadline(client, 'SEARCH', imap.commandTimeoutMs, client.search(query, { uid: true }));
      const uids = (found || []).sort((a, b) => a - b);
      messagesTotal = uids.length;
      for await (const group of fetchSources(client, uids, { ...imap, budget: 64 << 20 }))
        for (const [uid, source] of group) {
          const where = `imap:${name}/${box.folder}/${uid}`;
          if (source) yield { kind: 'message', bytes: source, source: where };
          else yield { kind: 'too-large', source: where, limit: imap.maxMessageBytes };
        }
    } finally {
      lock.release();
    }
  } finally {
    await client.logout().catch(() => client.close());
  }
}

async function jobsOf(unit: Unit & { kind: 'report' | 'message' }): Promise<ReportJobInput[] | undefined> {
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
async function totalBytes(path: string, named = false, seen = new Set<string>()): Promise<number> {
  const info = await (named || values['follow-symlinks'] ? stat(path) : lstat(path)).catch(() => undefined);
  if (!info?.isDirectory()) return info?.isFile() ? info.size : 0;
  if (seen.has(`${info.dev}:${info.ino}`)) return 0;
  seen.add(`${info.dev}:${info.ino}`);
  let sum = 0;
  const entries = await readdir(path).catch(() => [] as string[]);
  for (const name of entries) if (name !== 'tmp') sum += await totalBytes(join(path, name), false, seen);
  return sum;
}

const tty = process.stderr.isTTY;
const started = Date.now();
let lastLine = 0;
let bytesRead = 0;
let bytesTotal = 0;
/** Over IMAP the count of messages is known up front, their bytes are not: the share goes by messages. */
let messagesTotal: number | undefined;
for (const path of positionals) bytesTotal += await totalBytes(path, true);
const sources: Array<AsyncGenerator<Unit>> = values.imap
  ? [imapUnits(values.imap, values.since)]
  : positionals.map((path) => units(path, true));

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
    if (unit.kind === 'unreadable') {
      counts.unreadable++;
      if (unreadable.length < 100) unreadable.push({ file: unit.source, reason: unit.reason });
      continue;
    }
    if (unit.kind === 'too-large') {
      counts.refused++;
      note(`larger than ${unit.limit} bytes`);
      continue;
    }
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
        query: `SELECT multiIf(outcome = 'stored', 'stored', outcome = 'conflict', 'conflict', concat('rejected: ', reject_reason)) AS o, count() AS n
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
  ...(unreadable.length > 0 ? { unreadableFiles: unreadable } : {}),
  ...(outcomes.size > 0 ? { outcomes: Object.fromEntries(outcomes) } : {}),
};
console.log(JSON.stringify(summary));
await queue.close();
await closeRedis(connection);
await ch.close();
