// The mailboxes the fetcher reads: IMAP_MAILBOXES (JSON) or IMAP_MAILBOXES_FILE (a JSON file, to keep passwords out
// of the environment), validated once. A password, a password file, or a command that prints an OAuth2 access token
// (XOAUTH2, for Google Workspace and Microsoft 365).
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { z } from 'zod';

const imapName = z.string().min(1).max(200);

export const mailboxSchema = z
  .object({
    /** Names the mailbox in logs, metrics and the fetcher's state in Redis. */
    name: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'letters, digits, _ . - (at most 64)'),
    host: z.string().min(1),
    port: z.number().int().min(1).max(65535).optional(),
    /** implicit: TLS from the first byte (993); starttls: plain connect, then STARTTLS, required (143). */
    tls: z.enum(['implicit', 'starttls']).default('implicit'),
    user: z.string().min(1),
    password: z.string().min(1).optional(),
    passwordFile: z.string().min(1).optional(),
    accessTokenCommand: z.string().min(1).optional(),
    folder: imapName.default('INBOX'),
    /** How a queued message is marked: a keyword (default), \Seen, or moved to `moveTo`. */
    mark: z.enum(['keyword', 'seen', 'move']).default('keyword'),
    keyword: z
      .string()
      .regex(/^\$?[A-Za-z0-9_-]{1,64}$/)
      .default('$TLSRPT-Queued'),
    moveTo: imapName.optional(),
    /** Where mail that holds no TLS report goes; unset: it is left alone. */
    notReportFolder: imapName.optional(),
    /** Polling interval where the server has no IDLE, and a safety net where it has. */
    pollSeconds: z.number().int().min(5).max(86_400).default(60),
    /** A PEM file of CAs to trust (a private CA); by default the system's. */
    caFile: z.string().min(1).optional(),
  })
  .refine(
    (m) => [m.password, m.passwordFile, m.accessTokenCommand].filter((x) => x !== undefined).length === 1,
    'give exactly one of password, passwordFile and accessTokenCommand',
  )
  .refine((m) => m.mark !== 'move' || m.moveTo !== undefined, 'mark "move" needs moveTo');

export type Mailbox = z.infer<typeof mailboxSchema>;

export async function loadMailboxes(json: string, file: string): Promise<Mailbox[]> {
  const text = file ? await readFile(file, 'utf8') : json;
  if (text.trim() === '') return [];
  const list = z.array(mailboxSchema).parse(JSON.parse(text));
  const names = new Set(list.map((m) => m.name));
  if (names.size !== list.length) throw new Error('IMAP_MAILBOXES: two mailboxes share a name');
  return list;
}

/** The credentials for one connection: a password (read fresh from its file) or a fresh access token. */
export async function credentials(m: Mailbox): Promise<{ user: string; pass?: string; accessToken?: string }> {
  if (m.password) return { user: m.user, pass: m.password };
  if (m.passwordFile) return { user: m.user, pass: (await readFile(m.passwordFile, 'utf8')).trim() };
  const { stdout } = await promisify(execFile)('/bin/sh', ['-c', m.accessTokenCommand ?? ''], {
    timeout: 30_000,
    maxBuffer: 64 * 1024,
  });
  return { user: m.user, accessToken: stdout.trim() };
}
