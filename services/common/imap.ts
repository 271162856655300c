// An IMAP connection under our bounds, for the mailbox fetcher and npm run import -- --imap: every command under an
// absolute deadline, messages read to at most the message limit, a batch's bytes within a budget. The server may be
// hostile: it can neither hold a process nor fill its memory.
import { ImapFlow } from 'imapflow';
import { readFile } from 'node:fs/promises';
import type { Logger } from './logger.ts';
import { credentials, type Mailbox } from './mailboxes.ts';

/** What one IMAP connection may cost: its bytes and how long each command may take. */
export interface ImapLimits {
  /** The largest message read; a larger one, whatever size the server announced, is left alone. */
  maxMessageBytes: number;
  /** How long one command (connect and log in, SELECT, SEARCH, one FETCH, STORE) may take in all, not between bytes. */
  commandTimeoutMs: number;
}

/**
 * imapflow's own bounds (1 GiB a literal, 2 GiB a response by default) set from the message limit: a server that
 * announces 100 bytes and sends a 900 MiB literal is cut off at its first line. A line (a SEARCH answer) may hold a
 * few million UIDs.
 */
const parserLimits = (maxMessageBytes: number) => ({
  maxLiteralSize: maxMessageBytes + 1,
  maxResponseSize: maxMessageBytes + (1 << 20),
  maxLineLength: 64 << 20,
});

export class DeadlineError extends Error {}

/** `work`, or a DeadlineError after `ms`: the connection is closed then, so the command can hold nothing longer. */
export async function withDeadline<T>(client: ImapFlow, what: string, ms: number, work: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      client.close();
      reject(new DeadlineError(`${what} took longer than ${ms / 1000} s: connection closed`));
    }, ms);
  });
  try {
    return await Promise.race([work, expired]);
  } finally {
    clearTimeout(timer);
    // The command's own rejection, after the close, is ours to ignore.
    work.catch(() => {});
  }
}

export async function connectMailbox(m: Mailbox, logger: Logger, limits: ImapLimits): Promise<ImapFlow> {
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
    ...parserLimits(limits.maxMessageBytes),
  });
  client.on('error', (err: Error) => logger.warn({ err, mailbox: m.name }, 'imap connection error'));
  await withDeadline(client, 'connecting and logging in', limits.commandTimeoutMs, client.connect());
  return client;
}

/**
 * Message sources in groups whose bytes stay within `budget` (each message at most `maxMessageBytes`, read as a
 * partial fetch of one byte more: a message that fills it is larger than it said), each group one FETCH under the
 * deadline. Yields uid → source (undefined: larger than the limit).
 */
export async function* fetchSources(
  client: ImapFlow,
  uids: number[],
  limits: ImapLimits & { budget: number },
): AsyncGenerator<Map<number, Buffer | undefined>> {
  const per = Math.max(1, Math.floor(limits.budget / limits.maxMessageBytes));
  for (let i = 0; i < uids.length; i += per) {
    const group = uids.slice(i, i + per);
    const fetched = await withDeadline(
      client,
      `FETCH of ${group.length} message(s)`,
      limits.commandTimeoutMs,
      client.fetchAll(
        group.join(','),
        { uid: true, source: { start: 0, maxLength: limits.maxMessageBytes + 1 } },
        { uid: true },
      ),
    );
    const out = new Map<number, Buffer | undefined>();
    for (const m of fetched)
      if (group.includes(m.uid) && m.source)
        out.set(m.uid, m.source.length > limits.maxMessageBytes ? undefined : m.source);
    yield out;
  }
}
