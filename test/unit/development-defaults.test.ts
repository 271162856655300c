import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../services/common/config.ts';
import {
  developmentDefaults,
  isLocalHost,
  refuseDevelopmentDefaults,
} from '../../services/common/development-defaults.ts';

const ALL = ['TLS_CERT_FILE', 'MTA_STS_RUA', 'MTA_STS_HOST_TARGET', 'SMTP_RECIPIENTS'] as const;

describe('development defaults outside development', () => {
  it('tells names and addresses of this machine from others', () => {
    for (const h of ['localhost', 'LOCALHOST.', 'a.localhost', '127.0.0.1', '127.8.9.1', '::1', '[::1]', '0.0.0.0', ''])
      expect(isLocalHost(h), h).toBe(true);
    for (const h of ['example.com', 'localhost.example.com', '192.0.2.1', '2001:db8::1', 'mta-sts.example.net'])
      expect(isLocalHost(h), h).toBe(false);
  });

  it('finds every default a service uses, and nothing once they are set', () => {
    const defaults = loadConfig({});
    expect(developmentDefaults(defaults, [...ALL]).map((p) => p.split(/[=:]/)[0])).toEqual([
      'TLS_CERT_FILE / TLS_KEY_FILE are empty',
      'MTA_STS_RUA',
      'MTA_STS_HOST_TARGET',
      'SMTP_RECIPIENTS',
    ]);
    const set = loadConfig({
      TLS_CERT_FILE: '/etc/tlsrpt/cert.pem',
      TLS_KEY_FILE: '/etc/tlsrpt/key.pem',
      MTA_STS_RUA: 'mailto:tlsrpt@reports.example.net,https://reports.example.net/v1/tlsrpt',
      MTA_STS_HOST_TARGET: 'mta-sts.example.net.',
      SMTP_RECIPIENTS: 'tlsrpt@reports.example.net',
    });
    expect(developmentDefaults(set, [...ALL])).toEqual([]);
    // One local URI among others is still one that reaches no one.
    const mixed = loadConfig({ MTA_STS_RUA: 'mailto:tlsrpt@reports.example.net,https://127.0.0.1:8443/v1/tlsrpt' });
    expect(developmentDefaults(mixed, ['MTA_STS_RUA'])).toHaveLength(1);
    // A key without its certificate is not a certificate.
    expect(developmentDefaults(loadConfig({ TLS_KEY_FILE: '/k.pem' }), ['TLS_CERT_FILE'])).toHaveLength(1);
  });

  it('refuses only with NODE_ENV=production, naming each setting', () => {
    expect(() => refuseDevelopmentDefaults(loadConfig({}), [...ALL])).not.toThrow();
    expect(() => refuseDevelopmentDefaults(loadConfig({ NODE_ENV: 'test' }), [...ALL])).not.toThrow();
    expect(() => refuseDevelopmentDefaults(loadConfig({ NODE_ENV: 'production' }), ['MTA_STS_HOST_TARGET'])).toThrow(
      /NODE_ENV=production[\s\S]*MTA_STS_HOST_TARGET=localhost/,
    );
  });
});
