// Reads one IMAP mailbox, a batch of messages at a time: each message goes through the shared mail intake
// (services/common/intake) and its reports are queued; only then are the batch's messages marked (a keyword, \Seen,
// or moved) and the last UID recorded in Redis. A crash at any point loses nothing: an unmarked message is read
// again, and its receipt ids (from its bytes) make the second queueing a no-op or a duplicate the worker counts once. A new UIDVALIDITY means the UIDs
// recorded no longer name the same messages: the folder is read again from the start, with the same guarantee.
import type { Redis } from 'ioredis';
import type { Queue } from 'bullmq';
import { ImapFlow, type FetchMessageObject } from 'imapflow';
import { readFile } from 'node:fs/promises';
import type { Logger } from '../common/logger.ts';
import { enqueueReport } from '../common/queue.ts';
import type { DNSResolver } from '../common/intake/dkim.ts';
import type { ExtractOptions } from '../common/intake/extract.ts';
import { messageJobs } from '../common/intake/message.ts';
import { credentials, type Mailbox } from './mailboxes.ts';
import type { FetcherMetrics } from './metrics.ts';

export interface FetcherDeps {
  queue: Pick<Queue, 'add' | 'remove'>;
  redis: Redis;
  /** Prefix of the Redis keys that hold each mailbox's UIDVALIDITY and last UID. */
  stateKey: string;
  logger: Logger;
  metrics: FetcherMetrics;
  limits: ExtractOptions;
  maxMessageBytes: number;
  dkim: boolean;
  resolver?: DNSResolver | undefined;
}

/** Messages fetched per round trip: bounded memory however large the backlog. */
const BATCH = 50;

export async function connectMailbox(m: Mailbox, logger: Logger): Promise<ImapFlow> {
  const client = new ImapFlow({
    host: m.host,
    port: m.port ?? (m.tls === 'implicit' ? 993 : 143),
    secure: m.tls === 'implicit',
    // Credentials never cross the wire in clear: STARTTLS is required, not opportunistic.
    doSTARTTLS: m.tls === 'starttls' ? true : undefined,
    auth: await credentials(m),
    tls: {
      servername: m.host,
      ...(m.caFile ? { ca: await readFile(m.caFile, 'utf8') } : {}),
    },
    logger: false,
    connectionTimeout: 30_000,
    greetingTimeout: 30_000,
    socketTimeout: 5 * 60_000,
  });
  client.on('error', (err: Error) => logger.warn({ err, mailbox: m.name }, 'imap connection error'));
  await client.connect();
  return client;
}

export class MailboxFetcher {
  private stopping = false;
  private wake: (() => void) | undefined;
  private client: ImapFlow | undefined;
  connected = false;

  constructor(
    private readonly box: Mailbox,
    private readonly deps: FetcherDeps,
  ) {}

  /** Reads the mailbox until stop(): reconnects with backoff after errors, slowly after refused credentials. */
  async run(): Promise<void> {
    let failures = 0;
    while (!this.stopping) {
      try {
        await this.session();
        failures = 0;
      } catch (err) {
        this.connected = false;
        this.deps.metrics.connected.set({ mailbox: this.box.name }, 0);
        if (this.stopping) break;
        failures++;
        const auth = (err as { authenticationFailed?: boolean }).authenticationFailed === true;
        this.deps.metrics.errors.inc({ mailbox: this.box.name, kind: auth ? 'authentication' : 'connection' });
        // Refused credentials will not fix themselves in seconds: one clear line, then a long wait.
        const delay = auth ? 300_000 : Math.min(60_000, 1000 * 2 ** Math.min(failures - 1, 6));
        if (auth) {
          this.deps.logger.error(
            { mailbox: this.box.name, host: this.box.host, user: this.box.user, retryInSeconds: delay / 1000 },
            'IMAP login refused: check the user and password (or the access token command) of this mailbox',
          );
        } else {
          this.deps.logger.warn({ err, mailbox: this.box.name, retryInSeconds: delay / 1000 }, 'imap session ended');
        }
        await this.sleep(delay);
      }
    }
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.wake?.();
    const client = this.client;
    if (client?.usable) await client.logout().catch(() => client.close());
    else client?.close();
  }

  private async sleep(ms: number): Promise<void> {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.wake = done;
    });
    this.wake = undefined;
  }

  private async session(): Promise<void> {
    const client = await connectMailbox(this.box, this.deps.logger);
    this.client = client;
    const closed = new Promise<void>((resolve) => client.once('close', () => resolve()));
    // New mail (reported during IDLE, or by the NOOPs imapflow sends where IDLE is missing) ends the wait.
    client.on('exists', () => this.wake?.());
    client.once('close', () => this.wake?.());
    const lock = await client.getMailboxLock(this.box.folder);
    try {
      this.connected = true;
      this.deps.metrics.connected.set({ mailbox: this.box.name }, 1);
      this.deps.logger.info({ mailbox: this.box.name, folder: this.box.folder }, 'reading mailbox');
      while (!this.stopping && client.usable) {
        await this.drain(client);
        // IDLE by hand: imapflow's own starts only without a mailbox lock. Where the server has no IDLE, imapflow
        // polls with NOOP instead; the next command (the search of the next round) ends it.
        void client.idle().catch(() => {});
        await this.sleep(this.box.pollSeconds * 1000);
      }
    } finally {
      lock.release();
    }
    if (!this.stopping) {
      await Promise.race([closed, new Promise((r) => setTimeout(r, 1000))]);
      throw new Error('the IMAP connection closed');
    }
  }

  /** Everything after the last UID recorded, in UID order, a batch at a time. */
  async drain(client: ImapFlow): Promise<void> {
    const mailbox = client.mailbox;
    if (!mailbox) throw new Error('no mailbox open');
    const key = `${this.deps.stateKey}:${this.box.name}`;
    const validity = String(mailbox.uidValidity);
    const state = await this.deps.redis.hgetall(key);
    let last = Number(state.lastUid ?? 0);
    if (state.uidValidity !== undefined && state.uidValidity !== validity) {
      this.deps.logger.warn(
        { mailbox: this.box.name, was: state.uidValidity, now: validity },
        'UIDVALIDITY changed: reading the folder again from the start (receipt ids keep reports from counting twice)',
      );
      last = 0;
    }
    await this.deps.redis.hset(key, { uidValidity: validity, lastUid: String(last) });
    // `N:*` always names the newest message, even below N: keep only UIDs above the last one.
    const found = await client.search({ uid: `${last + 1}:*` }, { uid: true });
    const uids = (found || []).filter((u) => u > last).sort((a, b) => a - b);
    for (let i = 0; i < uids.length && !this.stopping; i += BATCH) {
      const batch = uids.slice(i, i + BATCH);
      const heads = await client.fetchAll(
        batch.join(','),
        { uid: true, size: true, flags: true, internalDate: true },
        { uid: true },
      );
      const small = heads.filter((h) => (h.size ?? 0) <= this.deps.maxMessageBytes).map((h) => h.uid);
      const bodies =
        small.length > 0 ? await client.fetchAll(small.join(','), { uid: true, source: true }, { uid: true }) : [];
      const sourceOf = new Map(bodies.map((b) => [b.uid, b.source]));
      // Every message of the batch queued first; then the marks, one command each; then the last UID.
      const marked: number[] = [];
      const notReports: number[] = [];
      let done = 0;
      for (const head of heads.sort((a, b) => a.uid - b.uid)) {
        if (this.stopping) break;
        const action = await this.handle(head, sourceOf.get(head.uid));
        if (action === 'mark') marked.push(head.uid);
        if (action === 'not-report') notReports.push(head.uid);
        done = head.uid;
      }
      await this.mark(client, marked, notReports);
      if (done > 0) await this.deps.redis.hset(key, { lastUid: String(done) });
    }
  }

  /** Marks the messages whose reports are queued, and moves away mail that holds none (where configured). */
  private async mark(client: ImapFlow, queued: number[], notReports: number[]): Promise<void> {
    if (queued.length > 0) {
      const range = queued.join(',');
      if (this.box.mark === 'move') await client.messageMove(range, this.box.moveTo ?? '', { uid: true });
      else await client.messageFlagsAdd(range, [this.box.mark === 'seen' ? '\\Seen' : this.box.keyword], { uid: true });
    }
    if (notReports.length > 0 && this.box.notReportFolder)
      await client.messageMove(notReports.join(','), this.box.notReportFolder, { uid: true });
  }

  /** Queues the reports of one message; says whether it is to be marked, moved as not a report, or left alone. */
  private async handle(head: FetchMessageObject, source: Buffer | undefined): Promise<'mark' | 'not-report' | 'none'> {
    const labels = { mailbox: this.box.name };
    this.deps.metrics.messages.inc(labels);
    if (this.box.mark === 'keyword' && head.flags?.has(this.box.keyword)) return 'none';
    if (!source) {
      this.deps.metrics.errors.inc({ ...labels, kind: 'too-large' });
      this.deps.logger.warn(
        { mailbox: this.box.name, uid: head.uid, bytes: head.size },
        'message too large; left alone',
      );
      return 'none';
    }
    const outcome = await messageJobs(source, {
      limits: this.deps.limits,
      channel: 'imap',
      dkim: this.deps.dkim,
      resolver: this.deps.resolver,
    });
    if (outcome.kind !== 'reports') {
      this.deps.metrics.notReports.inc(labels);
      if (outcome.kind === 'refused')
        this.deps.logger.info({ mailbox: this.box.name, uid: head.uid, reason: outcome.reason }, 'message refused');
      return 'not-report';
    }
    // Side by side: Redis pipelines them; all are in Redis before the message is marked.
    await Promise.all(
      outcome.jobs.map((job) =>
        enqueueReport(this.deps.queue, { ...job, meta: { mailbox: this.box.name, uid: head.uid } }, 10_000),
      ),
    );
    this.deps.metrics.queued.inc(labels, outcome.jobs.length);
    if (head.internalDate) {
      const at = new Date(head.internalDate).getTime();
      if (Number.isFinite(at)) this.deps.metrics.lag.observe(labels, Math.max(0, (Date.now() - at) / 1000));
    }
    return 'mark';
  }
}
