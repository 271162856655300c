// Reads one IMAP mailbox, a batch of messages at a time: each message goes through the shared mail intake
// (services/common/intake) and its reports are queued; only then are the batch's messages marked (a keyword, \Seen,
// or moved) and the last UID recorded in Redis. A crash at any point loses nothing: an unmarked message is read
// again, and its receipt ids (from its bytes) make the second queueing a no-op or a duplicate the worker counts once. A new UIDVALIDITY means the UIDs
// recorded no longer name the same messages: the folder is read again from the start, with the same guarantee.
import type { Redis } from 'ioredis';
import type { Queue } from 'bullmq';
import { ImapFlow, type FetchMessageObject } from 'imapflow';
import type { Logger } from '../common/logger.ts';
import { enqueueReport } from '../common/queue.ts';
import type { DNSResolver } from '../common/intake/dkim.ts';
import type { ExtractOptions } from '../common/intake/extract.ts';
import { messageJobs } from '../common/intake/message.ts';
import type { Mailbox } from '../common/mailboxes.ts';
import { connectMailbox, fetchSources, withDeadline, type ImapLimits } from '../common/imap.ts';
import type { FetcherMetrics } from './metrics.ts';

export interface FetcherDeps {
  queue: Pick<Queue, 'add' | 'remove'>;
  redis: Redis;
  /** Prefix of the Redis keys that hold each mailbox's UIDVALIDITY and last UID. */
  stateKey: string;
  logger: Logger;
  metrics: FetcherMetrics;
  limits: ExtractOptions;
  imap: ImapLimits;
  /** Bytes of message sources held at once (a batch of 50 large messages would hold 50 times the limit). */
  batchBytes?: number;
  dkim: boolean;
  resolver?: DNSResolver | undefined;
}

/** Messages fetched per round trip: bounded memory however large the backlog. */
const BATCH = 50;

/** The fetcher's health for /healthz: healthy while every mailbox is, else the ones that are not, with why. */
export function mailboxesHealth(fetchers: MailboxFetcher[]): { healthy: boolean; mailboxes?: unknown[] } {
  const unhealthy = fetchers.flatMap((f) => (f.health.healthy ? [] : [{ mailbox: f.name, ...f.health }]));
  return unhealthy.length === 0 ? { healthy: true } : { healthy: false, mailboxes: unhealthy };
}

/** A mailbox's health: unhealthy from a failed session until a later one has read the folder. */
export interface MailboxHealth {
  healthy: boolean;
  /** Why not, as the last error said. */
  reason?: string;
  since: string;
}

/**
 * A LOGIN the server refused for the credentials, not for a while: a NO with a temporary response code (RFC 5530:
 * UNAVAILABLE, LIMIT, INUSE; Dovecot's "Maximum number of connections") is retried like a lost connection.
 */
export function refusedCredentials(err: unknown): boolean {
  const e = err as { authenticationFailed?: boolean; serverResponseCode?: string; response?: unknown };
  if (e.authenticationFailed !== true) return false;
  const code = (e.serverResponseCode ?? '').toUpperCase();
  if (['UNAVAILABLE', 'LIMIT', 'INUSE'].includes(code)) return false;
  return !/maximum number of connections/i.test(typeof e.response === 'string' ? e.response : '');
}

export class MailboxFetcher {
  health: MailboxHealth = { healthy: true, since: new Date().toISOString() };
  private stopping = false;
  /** The current session read the mailbox through at least once (a session failing before that backs off further). */
  private reading = false;
  private wake: (() => void) | undefined;
  private client: ImapFlow | undefined;
  private clientError: Error | undefined;
  connected = false;

  constructor(
    private readonly box: Mailbox,
    private readonly deps: FetcherDeps,
  ) {}

  get name(): string {
    return this.box.name;
  }

  /** Reads the mailbox until stop(): reconnects with backoff after errors, slowly after refused credentials. */
  async run(): Promise<void> {
    let failures = 0;
    while (!this.stopping) {
      this.reading = false;
      try {
        await this.session();
        failures = 0;
      } catch (err) {
        // The IMAP server let us in (the folder was selected) and the failure came after: Redis, say.
        const selected = this.connected;
        this.connected = false;
        this.deps.metrics.connected.set({ mailbox: this.box.name }, 0);
        if (this.stopping) break;
        // A session that read the mailbox through and then failed (Redis lost its master under it) starts the backoff
        // anew: counting every failure since start, one such error after hours waited a minute.
        failures = this.reading ? 1 : failures + 1;
        // The connection's own error says more than the command's "Connection not available" after it.
        const cause = this.clientError ?? err;
        this.setHealth(false, cause instanceof Error ? cause.message : String(cause));
        const auth = refusedCredentials(err);
        this.deps.metrics.errors.inc({ mailbox: this.box.name, kind: auth ? 'authentication' : 'connection' });
        // Back within 10 s of Redis' return when IMAP was not the trouble.
        const longest = selected ? 10_000 : 60_000;
        // Refused credentials will not fix themselves in seconds: one clear line, then a long wait.
        const delay = auth ? 300_000 : Math.min(longest, 1000 * 2 ** Math.min(failures - 1, 6));
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

  private setHealth(healthy: boolean, reason?: string): void {
    if (healthy === this.health.healthy && reason === this.health.reason) return;
    this.health = { healthy, ...(reason ? { reason: reason.slice(0, 500) } : {}), since: new Date().toISOString() };
    this.deps.metrics.healthy.set({ mailbox: this.box.name }, healthy ? 1 : 0);
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.wake?.();
    if (this.client) await this.logout(this.client);
  }

  /** LOGOUT, within a deadline: a server that never answers it holds neither a shutdown nor the next session. */
  private async logout(client: ImapFlow): Promise<void> {
    if (client.usable)
      await withDeadline(client, 'LOGOUT', Math.min(5000, this.deps.imap.commandTimeoutMs), client.logout()).catch(() =>
        client.close(),
      );
    else client.close();
  }

  /** Waits `ms`, or until woken; not at all once stopping (stop() may come while no sleep is there to wake). */
  private async sleep(ms: number): Promise<void> {
    if (this.stopping) return;
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
    this.clientError = undefined;
    const client = await connectMailbox(this.box, this.deps.logger, this.deps.imap);
    this.client = client;
    client.on('error', (err: Error) => (this.clientError ??= err));
    const closed = new Promise<void>((resolve) => client.once('close', () => resolve()));
    // New mail (reported during IDLE, or by the NOOPs imapflow sends where IDLE is missing) ends the wait.
    client.on('exists', () => this.wake?.());
    client.once('close', () => this.wake?.());
    try {
      await this.read(client, closed);
    } finally {
      // Whatever ended the session, its connection ends with it: a Redis error mid-session left it open, and
      // Dovecot's limit of 10 connections per user and address then refused every new one.
      if (!this.stopping) await this.logout(client);
    }
  }

  private async read(client: ImapFlow, closed: Promise<void>): Promise<void> {
    const lock = await this.command(client, `SELECT ${this.box.folder}`, client.getMailboxLock(this.box.folder));
    try {
      this.connected = true;
      this.deps.metrics.connected.set({ mailbox: this.box.name }, 1);
      this.deps.logger.info({ mailbox: this.box.name, folder: this.box.folder }, 'reading mailbox');
      while (!this.stopping && client.usable) {
        await this.drain(client);
        this.reading = true;
        this.setHealth(true);
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
    const found = await this.command(client, 'SEARCH', client.search({ uid: `${last + 1}:*` }, { uid: true }));
    const uids = (found || []).filter((u) => u > last).sort((a, b) => a - b);
    for (let i = 0; i < uids.length && !this.stopping; i += BATCH) {
      const batch = uids.slice(i, i + BATCH);
      const heads = await this.command(
        client,
        'FETCH of sizes and flags',
        client.fetchAll(batch.join(','), { uid: true, size: true, flags: true, internalDate: true }, { uid: true }),
      );
      // Announced sizes pick what to read; the bytes that arrive are checked again (fetchSources).
      const small = heads.filter((h) => (h.size ?? 0) <= this.deps.imap.maxMessageBytes).map((h) => h.uid);
      const sourceOf = new Map<number, Buffer | undefined>();
      const budget = this.deps.batchBytes ?? 64 << 20;
      for await (const group of fetchSources(client, small, { ...this.deps.imap, budget }))
        for (const [uid, source] of group) sourceOf.set(uid, source);
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
      const flag = this.box.mark === 'seen' ? '\\Seen' : this.box.keyword;
      await this.command<unknown>(
        client,
        'marking',
        this.box.mark === 'move'
          ? client.messageMove(range, this.box.moveTo ?? '', { uid: true })
          : client.messageFlagsAdd(range, [flag], { uid: true }),
      );
    }
    if (notReports.length > 0 && this.box.notReportFolder)
      await this.command(
        client,
        'moving mail that is no report',
        client.messageMove(notReports.join(','), this.box.notReportFolder, { uid: true }),
      );
  }

  private command<T>(client: ImapFlow, what: string, work: Promise<T>): Promise<T> {
    return withDeadline(client, what, this.deps.imap.commandTimeoutMs, work);
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
