// IMAP_MAILBOXES is validated once, at start-up, with a message that names what is wrong.
import { describe, expect, it } from 'vitest';
import { credentials, loadMailboxes } from '../../services/common/mailboxes.ts';
import { refusedCredentials } from '../../services/mailbox-fetcher/fetcher.ts';

const box = (over: Record<string, unknown> = {}) => ({ name: 'm', host: 'imap.example.com', user: 'u', ...over });
const load = (list: unknown[]) => loadMailboxes(JSON.stringify(list), '');

describe('IMAP_MAILBOXES', () => {
  it('takes a mailbox with defaults filled in; empty means none', async () => {
    expect(await load([box({ password: 'p' })])).toEqual([
      expect.objectContaining({
        tls: 'implicit',
        folder: 'INBOX',
        mark: 'keyword',
        keyword: '$TLSRPT-Queued',
        pollSeconds: 60,
      }),
    ]);
    expect(await loadMailboxes('  ', '')).toEqual([]);
  });
  it('refuses a mailbox without exactly one way to sign in, a move without a folder, two with one name', async () => {
    await expect(load([box()])).rejects.toThrow(/exactly one of password, passwordFile and accessTokenCommand/);
    await expect(load([box({ password: 'p', accessTokenCommand: 'x' })])).rejects.toThrow(/exactly one/);
    await expect(load([box({ password: 'p', mark: 'move' })])).rejects.toThrow(/needs moveTo/);
    await expect(load([box({ password: 'p' }), box({ password: 'q' })])).rejects.toThrow(/share a name/);
    await expect(load([box({ password: 'p', name: 'a b' })])).rejects.toThrow();
    await expect(load([box({ password: 'p', keyword: 'a b' })])).rejects.toThrow();
  });
  it('runs the access token command at each connection and uses what it prints', async () => {
    const [m] = await load([box({ accessTokenCommand: 'echo "  tok-$((40 + 2))  "' })]);
    expect(await credentials(m!)).toEqual({ user: 'u', accessToken: 'tok-42' });
  });
});

describe('a refused IMAP login', () => {
  const refusal = (serverResponseCode: string | undefined, response: string) =>
    Object.assign(new Error('Command failed'), { authenticationFailed: true, serverResponseCode, response });

  it('is about the credentials unless the server says it is for a while', () => {
    expect(refusedCredentials(refusal('AUTHENTICATIONFAILED', 'Authentication failed.'))).toBe(true);
    expect(refusedCredentials(refusal(undefined, 'LOGIN failed'))).toBe(true);
    // Dovecot, with an address already holding mail_max_userip_connections: a wait and a retry, not 5 minutes.
    const dovecot = 'Maximum number of connections from user+IP exceeded (mail_max_userip_connections=10)';
    expect(refusedCredentials(refusal(undefined, dovecot))).toBe(false);
    expect(refusedCredentials(refusal('UNAVAILABLE', 'try later'))).toBe(false);
    expect(refusedCredentials(refusal('limit', 'too many'))).toBe(false);
    expect(refusedCredentials(new Error('connection lost'))).toBe(false);
  });
});
