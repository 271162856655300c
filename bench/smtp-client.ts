// The bench's SMTP load generator: one STARTTLS connection kept open, then MAIL, RCPT and DATA pipelined (RFC 2920,
// as the large reporters send) and the message written as prepared. The load shares the machine's two cores with the
// services it measures: nodemailer's pool took 0.8–1.1 ms of CPU per mail there against 0.5 ms per HTTPS POST, which
// the SMTP phase paid for and the HTTPS phase did not. Bench only: the product sends mail with nodemailer.
import { connect as tcpConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';

export interface SmtpReply {
  code: number;
  text: string;
}

/** Replies read off a socket in order; each `next()` is the next complete (possibly multi-line) reply. */
class ReplyReader {
  private buffered = '';
  private lines: string[] = [];
  private readonly ready: SmtpReply[] = [];
  private readonly waiting: Array<{ resolve: (r: SmtpReply) => void; reject: (e: Error) => void }> = [];
  private failure: Error | undefined;

  constructor(private readonly socket: Socket) {
    socket.on('data', this.onData);
    socket.on('error', (err) => this.fail(err));
    socket.on('close', () => this.fail(new Error('connection closed')));
  }

  private readonly onData = (chunk: Buffer): void => {
    this.buffered += chunk.toString('latin1');
    let end;
    while ((end = this.buffered.indexOf('\n')) >= 0) {
      const line = this.buffered.slice(0, end).replace(/\r$/, '');
      this.buffered = this.buffered.slice(end + 1);
      this.lines.push(line);
      if (line.charAt(3) === '-') continue;
      const reply = { code: Number(line.slice(0, 3)), text: this.lines.join('\n') };
      this.lines = [];
      const w = this.waiting.shift();
      if (w) w.resolve(reply);
      else this.ready.push(reply);
    }
  };

  private fail(err: Error): void {
    this.failure ??= err;
    for (const w of this.waiting.splice(0)) w.reject(this.failure);
  }

  /** Stops reading: the socket is handed to TLS. */
  detach(): void {
    this.socket.off('data', this.onData);
  }

  next(): Promise<SmtpReply> {
    const r = this.ready.shift();
    if (r) return Promise.resolve(r);
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => this.waiting.push({ resolve, reject }));
  }
}

async function expect(reader: ReplyReader, code: number, step: string): Promise<SmtpReply> {
  const r = await reader.next();
  if (r.code !== code) throw Object.assign(new Error(`${step}: ${r.text}`), { responseCode: r.code });
  return r;
}

export class SmtpConnection {
  private constructor(
    private readonly socket: Socket,
    private readonly reader: ReplyReader,
  ) {}

  /** Connects, says EHLO, upgrades with STARTTLS and says EHLO again. */
  static async open(port: number, ca: string | Buffer, servername: string): Promise<SmtpConnection> {
    const plain = tcpConnect({ host: '127.0.0.1', port });
    const first = new ReplyReader(plain);
    try {
      await expect(first, 220, 'greeting');
      plain.write('EHLO bench.example\r\n');
      await expect(first, 250, 'EHLO');
      plain.write('STARTTLS\r\n');
      await expect(first, 220, 'STARTTLS');
    } catch (err) {
      plain.destroy();
      throw err;
    }
    first.detach();
    const secure = tlsConnect({ socket: plain, ca, servername });
    const reader = new ReplyReader(secure);
    try {
      await new Promise<void>((resolve, reject) => {
        secure.once('secureConnect', resolve);
        secure.once('error', reject);
      });
      secure.write('EHLO bench.example\r\n');
      await expect(reader, 250, 'EHLO after STARTTLS');
    } catch (err) {
      secure.destroy();
      throw err;
    }
    return new SmtpConnection(secure, reader);
  }

  /**
   * Sends one message (CRLF line ends, ending with CRLF) and returns the server's final reply to it: the reply to
   * the end of data, or the first refusal of MAIL, RCPT or DATA. Throws only when the connection fails.
   */
  async send(from: string, to: string, message: string): Promise<SmtpReply> {
    this.socket.write(`MAIL FROM:<${from}>\r\nRCPT TO:<${to}>\r\nDATA\r\n`);
    const replies = [await this.reader.next(), await this.reader.next(), await this.reader.next()];
    const refused = replies.slice(0, 2).find((r) => r.code >= 300);
    if (refused || replies[2]!.code !== 354) {
      // DATA was refused or accepted without a recipient: an empty message ends it either way.
      if (replies[2]!.code === 354) {
        this.socket.write('.\r\n');
        await this.reader.next();
      }
      return refused ?? replies[2]!;
    }
    this.socket.write(message.replace(/^\./gm, '..') + '.\r\n');
    return this.reader.next();
  }

  close(): void {
    if (!this.socket.destroyed) this.socket.end('QUIT\r\n');
  }

  destroy(): void {
    this.socket.destroy();
  }
}
