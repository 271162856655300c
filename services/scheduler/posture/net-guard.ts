// The live checks connect only to the hosts a managed domain's DNS names, and never to private, loopback or other
// special addresses (unless POSTURE_ALLOW_PRIVATE, for tests): an on-demand check cannot be turned into a probe of
// our own network.
import { isIP } from 'node:net';
import ipaddr from 'ipaddr.js';
import type { Resolver } from 'node:dns/promises';

/** A public IPv4 address: ipaddr.js's `unicast`, i.e. none of the private, shared, reserved or special ranges. */
const publicV4 = (a: ipaddr.IPv4): boolean => a.range() === 'unicast';

/**
 * A public address we may connect to. An IPv6 address that embeds an IPv4 address can reach it through a
 * translator or tunnel, so: IPv4-mapped (::ffff:0:0/96) is judged as its IPv4 address; IPv4-compatible (::/96),
 * IPv4-translated (::ffff:0:0:0/96), NAT64 (64:ff9b::/96, 64:ff9b:1::/48) and Teredo are refused whatever they embed;
 * 6to4 (2002::/16) only when its IPv4 address is public.
 */
export function isPublicAddress(ip: string): boolean {
  // Only the standard spellings (isIP): ipaddr.js also reads '127.1' and '0x7f000001'.
  if (isIP(ip) === 0 || !ipaddr.isValid(ip)) return false;
  const a = ipaddr.process(ip);
  if (a.kind() === 'ipv4') return publicV4(a as ipaddr.IPv4);
  const v6 = a as ipaddr.IPv6;
  const bytes = v6.toByteArray();
  if (bytes.slice(0, 12).every((b) => b === 0)) return false;
  const range = v6.range();
  if (range === '6to4') return publicV4(new ipaddr.IPv4(bytes.slice(2, 6)));
  return range === 'unicast';
}

export class RefusedAddressError extends Error {}

/** The addresses of a host name from our resolver, refused when one is not public (unless allowed). */
export async function addressesOf(resolver: Resolver, host: string, allowPrivate: boolean): Promise<string[]> {
  const found = [
    ...(await resolver.resolve4(host).catch(() => [] as string[])),
    ...(await resolver.resolve6(host).catch(() => [] as string[])),
  ];
  if (found.length === 0) throw new Error(`${host} has no A or AAAA record`);
  const refused = found.filter((a) => !isPublicAddress(a));
  if (refused.length > 0 && !allowPrivate)
    throw new RefusedAddressError(`${host} resolves to ${refused.join(', ')}: not a public address, not contacted`);
  return found;
}
