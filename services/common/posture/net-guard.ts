// The live checks connect only to the hosts a managed domain's DNS names, and never to private, loopback or other
// special addresses (unless POSTURE_ALLOW_PRIVATE, for tests): an on-demand check cannot be turned into a probe of
// our own network.
import { BlockList, isIP } from 'node:net';
import type { Resolver } from 'node:dns/promises';

const special = new BlockList();
for (const [net, bits] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.0.2.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['198.51.100.0', 24],
  ['203.0.113.0', 24],
  ['224.0.0.0', 4],
  ['240.0.0.0', 4],
] as const)
  special.addSubnet(net, bits, 'ipv4');
for (const [net, bits] of [
  ['::', 128],
  ['::1', 128],
  ['::ffff:0:0', 96],
  ['64:ff9b::', 96],
  ['100::', 64],
  ['2001:db8::', 32],
  ['fc00::', 7],
  ['fe80::', 10],
  ['ff00::', 8],
] as const)
  special.addSubnet(net, bits, 'ipv6');

export function isPublicAddress(ip: string): boolean {
  const family = isIP(ip);
  if (family === 0) return false;
  return !special.check(ip, family === 4 ? 'ipv4' : 'ipv6');
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
