// One MX host's TLS as a sending MTA meets it: connect on port 25, EHLO, STARTTLS offered?, then the handshake:
// the chain trusted, the name matched, days to expiry, the TLS version. Bounded in bytes, and in time as a whole.
import { X509Certificate } from 'node:crypto';
import { issuerName } from '../../common/sts-certificates.ts';
import { connect as netConnect, type Socket } from 'node:net';
import { checkServerIdentity, connect as tlsConnect, type DetailedPeerCertificate, type TLSSocket } from 'node:tls';

export interface MxTls {
  starttls: boolean;
  trusted?: boolean;
  trustError?: string;
  nameMatches?: boolean;
  /** Whole days left (negative: days since it expired). */
  daysToExpiry?: number;
  expired?: boolean;
  validTo?: string;
  /** Who issued the host's certificate: its organization and common name. */
  issuer?: string;
  tlsVersion?: string;
  error?: string;
}

/** The chain the host presented (DER, its own certificate first), for matching its TLSA records; not stored. */
export type MxTlsChecked = MxTls & { chain?: Buffer[] };

/** The certificates a peer presented, its own first, each once (a self-signed root is its own issuer). */
function presentedChain(leaf: ReturnType<TLSSocket['getPeerCertificate']>): Buffer[] {
  const out: Buffer[] = [];
  let cert: DetailedPeerCertificate | undefined = leaf as DetailedPeerCertificate;
  while (cert?.raw && out.length < 10 && !out.some((c) => c.equals(cert!.raw))) {
    out.push(cert.raw);
    cert = cert.issuerCertificate;
  }
  return out;
}

/** Reads SMTP replies off a socket: each complete reply (its code and text), at most 64 KiB in all. */
function replies(socket: Socket) {
  let buffer = '';
  let waiting: ((r: { code: number; text: string }) => void) | undefined;
  let failed: ((e: Error) => void) | undefined;
  const ready: Array<{ code: number; text: string }> = [];
  const pump = (): void => {
    for (;;) {
      // A reply ends on a line whose code is followed by a space (or nothing).
      const m = /^(?:\d{3}-[^\n]*\n)*(\d{3})(?: [^\n]*)?\r?\n/.exec(buffer);
      if (!m) return;
      ready.push({ code: Number(m[1]), text: m[0] });
      buffer = buffer.slice(m[0].length);
      if (waiting) {
        const w = waiting;
        waiting = undefined;
        w(ready.shift()!);
      }
    }
  };
  socket.on('data', (d: Buffer) => {
    buffer += d.toString('latin1');
    if (buffer.length > 65536) socket.destroy(new Error('the server sent more than 64 KiB'));
    pump();
  });
  socket.on('error', (e) => failed?.(e));
  socket.on('close', () => failed?.(new Error('the server closed the connection')));
  return {
    next: () =>
      new Promise<{ code: number; text: string }>((resolve, reject) => {
        const r = ready.shift();
        if (r) return resolve(r);
        waiting = resolve;
        failed = reject;
      }),
    detach: () => socket.removeAllListeners('data'),
  };
}

export async function checkMxTls(o: {
  host: string;
  address: string;
  port: number;
  ca?: string | undefined;
  timeoutMs: number;
  now: Date;
}): Promise<MxTlsChecked> {
  const socket = netConnect({ host: o.address, port: o.port });
  let offered = false;
  let secure: TLSSocket | undefined;
  // An absolute deadline for the whole exchange: a server that drips a byte now and then resets an idle timeout.
  const deadline = setTimeout(() => {
    const err = new Error(`no complete exchange within ${o.timeoutMs} ms`);
    secure?.destroy(err);
    socket.destroy(err);
  }, o.timeoutMs);
  try {
    const smtp = replies(socket);
    const greeting = await smtp.next();
    if (greeting.code !== 220) return { starttls: false, error: `greeting ${greeting.code}` };
    socket.write('EHLO tlsrpt-pipeline.check\r\n');
    const ehlo = await smtp.next();
    if (ehlo.code !== 250) return { starttls: false, error: `EHLO answered ${ehlo.code}` };
    offered = /^250[- ]STARTTLS\s*$/im.test(ehlo.text);
    if (!offered) return { starttls: false };
    socket.write('STARTTLS\r\n');
    const go = await smtp.next();
    if (go.code !== 220) return { starttls: true, error: `STARTTLS answered ${go.code}` };
    smtp.detach();
    secure = tlsConnect({
      socket,
      servername: o.host,
      ...(o.ca ? { ca: o.ca } : {}),
      // Judged below, not refused: an untrusted or expired certificate is what the check reports.
      rejectUnauthorized: false,
    });
    const tls = secure;
    await new Promise<void>((resolve, reject) => {
      tls.once('secureConnect', () => resolve());
      tls.once('error', reject);
      tls.once('close', () => reject(new Error('the connection closed during the TLS handshake')));
    });
    const cert = tls.getPeerCertificate(true);
    const validTo = new Date(cert.valid_to);
    const issuer = issuerName(new X509Certificate(cert.raw));
    const result: MxTlsChecked = {
      starttls: true,
      trusted: tls.authorized,
      ...(tls.authorizationError ? { trustError: String(tls.authorizationError) } : {}),
      nameMatches: checkServerIdentity(o.host, cert) === undefined,
      daysToExpiry: Math.trunc((validTo.getTime() - o.now.getTime()) / 86400_000),
      expired: validTo.getTime() < o.now.getTime(),
      validTo: validTo.toISOString(),
      ...(issuer ? { issuer: issuer.slice(0, 200) } : {}),
      tlsVersion: tls.getProtocol() ?? '',
      chain: presentedChain(cert),
    };
    tls.end('QUIT\r\n');
    return result;
  } catch (err) {
    return { starttls: offered, error: err instanceof Error ? err.message : String(err) };
  } finally {
    clearTimeout(deadline);
    socket.destroy();
  }
}
