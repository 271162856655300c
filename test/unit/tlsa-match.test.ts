// TLSA records against the chain an MX host presents (services/scheduler/posture/tlsa.ts): DANE-EE against its own
// certificate, DANE-TA against the certificates above it; each selector and matching type; nothing else matches.
import { createHash, X509Certificate } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { tlsaMatches } from '../../services/scheduler/posture/tlsa.ts';
import { testCa } from '../helpers/dns-and-ca.ts';

let leaf: Buffer;
let root: Buffer;
let other: Buffer;
const sha = (alg: string, b: Buffer) => createHash(alg).update(b).digest('hex');
const spki = (der: Buffer) => new X509Certificate(der).publicKey.export({ type: 'spki', format: 'der' });

beforeAll(async () => {
  const ca = await testCa('TLSA Test CA');
  leaf = new X509Certificate((await ca.issue('mx.a.example')).cert).raw;
  root = new X509Certificate(ca.cert).raw;
  other = new X509Certificate((await ca.issue('mx.b.example')).cert).raw;
}, 60_000);

describe('a TLSA record against a presented chain', () => {
  it('DANE-EE (3): the host certificate, whole or its key, as itself, SHA-256 or SHA-512', () => {
    for (const record of [
      `3 1 1 ${sha('sha256', spki(leaf))}`,
      `3 1 2 ${sha('sha512', spki(leaf))}`,
      `3 0 1 ${sha('sha256', leaf)}`,
      `3 0 0 ${leaf.toString('hex')}`,
      `3 1 1 ${sha('sha256', spki(leaf)).toUpperCase()}`,
    ])
      expect(tlsaMatches(record, [leaf, root]), record.slice(0, 8)).toBe(true);
    expect(tlsaMatches(`3 1 1 ${sha('sha256', spki(other))}`, [leaf, root])).toBe(false);
    // The CA's hash under DANE-EE is no match: usage 3 is about the host's own certificate.
    expect(tlsaMatches(`3 0 1 ${sha('sha256', root)}`, [leaf, root])).toBe(false);
  });

  it('DANE-TA (2): a certificate above the host’s, only when the host presents it', () => {
    expect(tlsaMatches(`2 0 1 ${sha('sha256', root)}`, [leaf, root])).toBe(true);
    expect(tlsaMatches(`2 1 1 ${sha('sha256', spki(root))}`, [leaf, root])).toBe(true);
    expect(tlsaMatches(`2 0 1 ${sha('sha256', root)}`, [leaf])).toBe(false);
    expect(tlsaMatches(`2 0 1 ${sha('sha256', leaf)}`, [leaf, root])).toBe(false);
  });

  it('usages 0 and 1 (not for SMTP), unknown selectors or types, and garbage never match', () => {
    const hash = sha('sha256', spki(leaf));
    for (const record of [`1 1 1 ${hash}`, `0 1 1 ${hash}`, `3 2 1 ${hash}`, `3 1 3 ${hash}`, 'x', ''])
      expect(tlsaMatches(record, [leaf, root]), record.slice(0, 8)).toBe(false);
    expect(tlsaMatches(`3 1 1 ${hash}`, [])).toBe(false);
  });
});
