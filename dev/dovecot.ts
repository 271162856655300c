// Our own Dovecot (Debian's dovecot-imapd) for the mailbox fetcher's tests and benchmark: a passwd-file user, a
// Maildir under a folder of its own, IMAP with STARTTLS and IMAPS on free ports, the development certificate.
import { spawn, execFileSync } from 'node:child_process';
import { ImapFlow } from 'imapflow';
import { mkdir, writeFile, chmod } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { devCertPaths, loadTlsCredentials } from '../services/common/tls.ts';
import { freePort, pipeLogs, stopper, tcpProbe, waitUntil, type ManagedProcess, type StackLog } from './stack.ts';

export interface Dovecot extends ManagedProcess {
  /** IMAP with STARTTLS, and IMAPS (TLS from the first byte). */
  imapPort: number;
  imapsPort: number;
  /** The PEM certificate the server presents (for `localhost` and 127.0.0.1): trust it to verify. */
  ca: string;
  users: Record<string, string>;
  /** Where each user's Maildir is. */
  maildir: (user: string) => string;
}

export async function startDovecot(opts: {
  dir: string;
  users: Record<string, string>;
  log: StackLog;
}): Promise<Dovecot> {
  const dir = resolve(opts.dir);
  for (const sub of ['run', 'state', 'mail', 'home']) await mkdir(join(dir, sub), { recursive: true });
  // The login processes run as dovenull and must reach the sockets under run/; mail is kept as the dovecot user
  // (Dovecot refuses root as a mail user).
  await chmod(dir, 0o755);
  execFileSync('chown', ['dovecot:dovecot', join(dir, 'mail'), join(dir, 'home')]);
  // The project's own development certificate (localhost and 127.0.0.1), made in this folder.
  const tls = await loadTlsCredentials({ DATA_DIR: dir, TLS_CERT_FILE: '', TLS_KEY_FILE: '' });
  const { cert, key } = devCertPaths(dir);
  await writeFile(
    join(dir, 'passwd'),
    Object.entries(opts.users)
      .map(([u, p]) => `${u}:{PLAIN}${p}::::::`)
      .join('\n') + '\n',
  );
  const [imapPort, imapsPort] = [await freePort(), await freePort()];
  const config = `
protocols = imap
listen = 127.0.0.1
base_dir = ${dir}/run
state_dir = ${dir}/state
log_path = /dev/stderr
ssl = yes
ssl_cert = <${cert}
ssl_key = <${key}
auth_mechanisms = plain login
first_valid_uid = 1
mail_location = maildir:${dir}/mail/%u
default_internal_user = dovecot
default_login_user = dovenull
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u ${dir}/passwd
}
userdb {
  driver = static
  args = uid=dovecot gid=dovecot home=${dir}/home/%u
}
service imap-login {
  inet_listener imap {
    port = ${imapPort}
  }
  inet_listener imaps {
    port = ${imapsPort}
    ssl = yes
  }
}
`;
  await writeFile(join(dir, 'dovecot.conf'), config);
  const child = spawn('dovecot', ['-F', '-c', join(dir, 'dovecot.conf')], { stdio: ['ignore', 'pipe', 'pipe'] });
  const logFile = join(dir, 'dovecot.log');
  pipeLogs('dovecot', child, opts.log, logFile);
  await waitUntil('dovecot', () => tcpProbe(imapPort, '', (a) => a.startsWith('* OK')), 30_000, child, logFile);
  return {
    name: 'dovecot',
    child,
    stop: stopper('dovecot', child, opts.log),
    imapPort,
    imapsPort,
    ca: tls.cert,
    users: opts.users,
    maildir: (user) => join(dir, 'mail', user),
  };
}

/** An IMAP client signed in to this Dovecot as one of its users (IMAPS, its certificate trusted). */
export async function dovecotClient(dovecot: Dovecot, user: string): Promise<ImapFlow> {
  const client = new ImapFlow({
    host: 'localhost',
    port: dovecot.imapsPort,
    secure: true,
    auth: { user, pass: dovecot.users[user] ?? '' },
    tls: { ca: dovecot.ca },
    logger: false,
  });
  await client.connect();
  return client;
}
