// The live checks' address guard: no private, loopback or special address, in any IPv4 or IPv6 spelling.
import { describe, expect, it } from 'vitest';
import { isPublicAddress } from '../../services/scheduler/posture/net-guard.ts';

describe('isPublicAddress', () => {
  it('takes public IPv4 and IPv6 addresses', () => {
    for (const ip of ['8.8.8.8', '1.1.1.1', '2606:4700::1111', '2a00:1450:4001:82b::1b', '::ffff:8.8.8.8'])
      expect(isPublicAddress(ip), ip).toBe(true);
  });

  it('refuses private, loopback, shared, reserved and documentation IPv4 ranges', () => {
    for (const ip of [
      '0.0.0.0',
      '10.1.2.3',
      '100.64.0.1',
      '127.0.0.1',
      '169.254.169.254',
      '172.16.0.1',
      '192.0.0.1',
      '192.0.2.1',
      '192.168.1.1',
      '198.18.0.1',
      '198.51.100.1',
      '203.0.113.1',
      '224.0.0.1',
      '240.0.0.1',
      '255.255.255.255',
    ])
      expect(isPublicAddress(ip), ip).toBe(false);
  });

  it('refuses every IPv6 form that embeds a private IPv4 address', () => {
    for (const ip of [
      // IPv4-compatible (::/96): passed the guard before.
      '::7f00:1',
      '::a00:1',
      '::127.0.0.1',
      // IPv4-mapped and IPv4-translated.
      '::ffff:127.0.0.1',
      '::ffff:7f00:1',
      '::ffff:0:7f00:1',
      '::ffff:0:a00:1',
      // NAT64, well-known and local-use prefixes.
      '64:ff9b::7f00:1',
      '64:ff9b::808:808',
      '64:ff9b:1::a00:1',
      // 6to4 of a private address.
      '2002:7f00:1::1',
      '2002:a00:1::1',
      '2002:c0a8:101::1',
      // Teredo.
      '2001:0:4136:e378:8000:63bf:3fff:fdd2',
    ])
      expect(isPublicAddress(ip), ip).toBe(false);
  });

  it('refuses special IPv6 ranges', () => {
    for (const ip of ['::', '::1', 'fe80::1', 'fc00::1', 'fd12:3456::1', 'ff02::1', '2001:db8::1', '100::1', 'fec0::1'])
      expect(isPublicAddress(ip), ip).toBe(false);
  });

  it('takes 6to4 of a public address, and refuses what is no address', () => {
    expect(isPublicAddress('2002:808:808::1')).toBe(true);
    for (const ip of ['', 'localhost', '127.1', '0x7f000001', '1.2.3', '::ffff:999.0.0.1'])
      expect(isPublicAddress(ip), ip).toBe(false);
  });
});
