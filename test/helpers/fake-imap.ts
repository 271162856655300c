// A fake IMAP server over implicit TLS, enough for imapflow to log in, select a folder, search, fetch and mark: one
// message in one folder, fetched as `body` says. Hostile bodies (a literal far larger than announced, a FETCH that
// never ends) test the fetcher's bounds; the honest one shows that another mailbox goes on meanwhile.
import { once } from 'node:events';
import { createServer, type Server, type TLSSocket } from 'node:tls';
import { loadTlsCredentials } from '../../services/common/tls.ts';

export type FakeBody =
  /** The message as it is. */
  | { kind: 'honest'; message: Buffer }
  /** Announces `announced` bytes, then sends a literal of `literal` bytes (zeros, generated as they are sent). */
  | { kind: 'huge-literal'; announced: number; literal: number }
  /** Answers the body fetch with untagged FETCH responses, one every `everyMs`, never a tagged end. */
  | { kind: 'endless'; everyMs: number };

export interface FakeImap {
  port: number;
  /** Bytes of message bodies written to clients so far. */
  bodyBytesSent: () => number;
  /** Commands received, in order (tags stripped). */
  commands: string[];
  close: () => Promise<void>;
}

export async function startFakeImap(
  dataDir: string,
  body: FakeBody,
  /** silentLogout: LOGOUT, and IDLE's end, are never answered. */
  opts: { silentLogout?: boolean } = {},
): Promise<FakeImap> {
  const tls = await loadTlsCredentials({ TLS_CERT_FILE: '', TLS_KEY_FILE: '', DATA_DIR: dataDir });
  let sent = 0;
  const commands: string[] = [];
  const sockets = new Set<TLSSocket>();
  const idleTags = new Map<TLSSocket, string>();
  const size = body.kind === 'honest' ? body.message.length : body.kind === 'huge-literal' ? body.announced : 100;

  async function sendBody(socket: TLSSocket, tag: string): Promise<void> {
    if (body.kind === 'honest') {
      socket.write(`* 1 FETCH (UID 1 BODY[]<0> {${body.message.length}}\r\n`);
      socket.write(body.message);
      sent += body.message.length;
      socket.write(`)\r\n${tag} OK FETCH done\r\n`);
      return;
    }
    if (body.kind === 'huge-literal') {
      socket.write(`* 1 FETCH (UID 1 BODY[]<0> {${body.literal}}\r\n`);
      const chunk = Buffer.alloc(1 << 20);
      for (let left = body.literal; left > 0 && !socket.destroyed; left -= chunk.length) {
        const piece = left >= chunk.length ? chunk : chunk.subarray(0, left);
        sent += piece.length;
        if (!socket.write(piece))
          await new Promise<void>((resolve) => {
            const done = () => resolve();
            socket.once('drain', done).once('close', done).once('error', done);
          });
      }
      if (!socket.destroyed) socket.write(`)\r\n${tag} OK FETCH done\r\n`);
      return;
    }
    const timer = setInterval(() => {
      if (socket.destroyed) clearInterval(timer);
      else socket.write('* 1 FETCH (FLAGS ())\r\n');
    }, body.everyMs);
    socket.once('close', () => clearInterval(timer));
  }

  function answer(socket: TLSSocket, line: string): void {
    const [tag = '*', ...rest] = line.split(' ');
    const command = rest.join(' ');
    commands.push(command);
    const verb = command.toUpperCase();
    const ok = (text = 'done') => socket.write(`${tag} OK ${text}\r\n`);
    if (verb.startsWith('CAPABILITY')) {
      socket.write('* CAPABILITY IMAP4rev1 AUTH=PLAIN IDLE\r\n');
      ok();
    } else if (verb.startsWith('LOGIN') || verb.startsWith('AUTHENTICATE')) ok('[CAPABILITY IMAP4rev1 IDLE] logged in');
    else if (verb.startsWith('SELECT') || verb.startsWith('EXAMINE')) {
      socket.write(
        '* FLAGS (\\Seen $TLSRPT-Queued)\r\n* 1 EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n* OK [UIDNEXT 2] ok\r\n',
      );
      ok('[READ-WRITE] selected');
    } else if (verb.startsWith('UID SEARCH') || verb.startsWith('SEARCH')) {
      socket.write('* SEARCH 1\r\n');
      ok();
    } else if (verb.startsWith('UID FETCH') && /BODY/.test(verb)) void sendBody(socket, tag);
    else if (verb.startsWith('UID FETCH') || verb.startsWith('FETCH')) {
      socket.write(`* 1 FETCH (UID 1 RFC822.SIZE ${size} FLAGS () INTERNALDATE "06-Dec-2026 10:00:00 +0000")\r\n`);
      ok();
    } else if (verb.startsWith('UID STORE')) {
      socket.write('* 1 FETCH (UID 1 FLAGS ($TLSRPT-Queued))\r\n');
      ok();
    } else if (verb.startsWith('LOGOUT')) {
      if (opts.silentLogout) return;
      socket.write('* BYE bye\r\n');
      ok();
      socket.end();
    } else if (verb.startsWith('IDLE')) {
      idleTags.set(socket, tag);
      socket.write('+ idling\r\n');
    } else ok();
  }

  const server: Server = createServer({ key: tls.key, cert: tls.cert }, (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    socket.write('* OK fake IMAP ready\r\n');
    let buffered = '';
    socket.on('data', (d: Buffer) => {
      buffered += d.toString('latin1');
      for (let nl = buffered.indexOf('\r\n'); nl >= 0; nl = buffered.indexOf('\r\n')) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 2);
        // IDLE's DONE comes without a tag; the IDLE command's own answer follows it.
        if (line === 'DONE') {
          const idle = idleTags.get(socket);
          idleTags.delete(socket);
          if (idle && !opts.silentLogout) socket.write(`${idle} OK IDLE terminated\r\n`);
          continue;
        }
        answer(socket, line);
      }
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  if (!address || typeof address === 'string') throw new Error('no port');
  return {
    port: address.port,
    bodyBytesSent: () => sent,
    commands,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
