// The TLSA records of an MX host (`_25._tcp.<host>`, RFC 7672), listed with the MX checks. Node's resolver has no
// TLSA queries: one UDP query, encoded and decoded by dns-packet, to the checks' first DNS server.
import { createSocket } from 'node:dgram';
import { randomInt } from 'node:crypto';
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
