// The TLSA records of an MX host (`_25._tcp.<host>`, RFC 7672), listed with the MX checks. Node's resolver has no
// TLSA queries: one UDP query, encoded and decoded by dns-packet, to the checks' first DNS server.
import { createSocket } from 'node:dgram';
import { createHash, randomInt, X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';
import * as dnsPacket from 'dns-packet';

/** `ip`, `ip:port` or `[ipv6]:port`, as Resolver.getServers() gives them. */
function parseServer(server: string): { address: string; port: number } {
  const v6 = /^\[(.+)\](?::(\d+))?$/.exec(server);
  if (v6) return { address: v6[1]!, port: Number(v6[2] ?? 53) };
  if (isIP(server) === 6) return { address: server, port: 53 };
  const [address, port] = server.split(':');
  return { address: address!, port: Number(port ?? 53) };
}

/** `usage selector matching-type hex` of each TLSA record, or [] (none, or no answer in time). */
export async function tlsaRecords(host: string, server: string, timeoutMs: number): Promise<string[]> {
  const { address, port } = parseServer(server);
  const socket = createSocket(isIP(address) === 6 ? 'udp6' : 'udp4');
  const id = randomInt(65536);
  const name = `_25._tcp.${host}`;
  try {
    const reply = await new Promise<Buffer | undefined>((resolve) => {
      const timer = setTimeout(() => resolve(undefined), timeoutMs);
      socket.on('message', (msg) => {
        if (msg.length >= 2 && msg.readUInt16BE(0) === id) {
          clearTimeout(timer);
          resolve(msg);
        }
      });
      socket.on('error', () => resolve(undefined));
      socket.send(
        dnsPacket.encode({
          type: 'query',
          id,
          flags: dnsPacket.RECURSION_DESIRED,
          questions: [{ type: 'TLSA', name }],
        }),
        port,
        address,
      );
    });
    if (!reply) return [];
    const answers = dnsPacket.decode(reply).answers ?? [];
    return answers.flatMap((a) =>
      a.type === 'TLSA' && a.name.toLowerCase() === name.toLowerCase()
        ? [`${a.data.usage} ${a.data.selector} ${a.data.matchingType} ${a.data.certificate.toString('hex')}`]
        : [],
    );
  } catch {
    return [];
  } finally {
    socket.close();
  }
}

/**
 * Whether a TLSA record matches the chain the MX host presented (RFC 6698 §2.1, RFC 7672 §3.1): usage 3 (DANE-EE)
 * against the host's own certificate, 2 (DANE-TA) against a certificate of its chain above it (usages 0 and 1 are
 * not used for SMTP: RFC 7672 §3.1.3, never a match); selector 0 the whole certificate, 1 its public key; matching
 * type 0 the data itself, 1 its SHA-256, 2 its SHA-512.
 */
export function tlsaMatches(record: string, chain: Buffer[]): boolean {
  const [usage, selector, matching, hex] = record.split(' ');
  const candidates = usage === '3' ? chain.slice(0, 1) : usage === '2' ? chain.slice(1) : [];
  return candidates.some((der) => {
    let data: Buffer;
    try {
      data =
        selector === '0'
          ? der
          : selector === '1'
            ? new X509Certificate(der).publicKey.export({ type: 'spki', format: 'der' })
            : Buffer.alloc(0);
    } catch {
      return false;
    }
    if (data.length === 0) return false;
    const digest =
      matching === '0'
        ? data
        : matching === '1'
          ? createHash('sha256').update(data).digest()
          : matching === '2'
            ? createHash('sha512').update(data).digest()
            : undefined;
    return digest !== undefined && digest.toString('hex') === (hex ?? '').toLowerCase();
  });
}
