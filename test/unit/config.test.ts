import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { configEnv, configSchema, loadConfig } from '../../services/common/config.ts';

describe('configuration', () => {
  it('.env.example lists every setting, and only settings that exist', () => {
    const listed = readFileSync(resolve(import.meta.dirname, '../../.env.example'), 'utf8')
      .split('\n')
      .filter((l) => /^[A-Z_]+=/.test(l))
      .map((l) => l.slice(0, l.indexOf('=')));
    expect(listed.sort()).toEqual(Object.keys(configSchema.shape).sort());
  });

  it('the values in .env.example parse, and equal the defaults', () => {
    const env = Object.fromEntries(
      readFileSync(resolve(import.meta.dirname, '../../.env.example'), 'utf8')
        .split('\n')
        .filter((l) => /^[A-Z_]+=/.test(l))
        .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
    );
    // Empty values stand for "not set".
    const set = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== ''));
    expect(loadConfig(set)).toEqual(loadConfig({}));
  });

  it('a bad setting stops start-up with the name and the reason', () => {
    expect(() => loadConfig({ HTTP_PORT: 'eighty' })).toThrow(/HTTP_PORT/);
    expect(() => loadConfig({ SMTP_DKIM_POLICY: 'maybe' })).toThrow(/SMTP_DKIM_POLICY/);
    expect(() => loadConfig({ ALERT_RULES: 'failure-rate,bogus' })).toThrow(/ALERT_RULES/);
    expect(() => loadConfig({ REDIS_SENTINELS: 'a.example:26379,b.example' })).toThrow(
      /REDIS_SENTINELS.*not host:port: b\.example/s,
    );
    expect(() => loadConfig({ REDIS_SENTINELS: 'a.example:99999' })).toThrow(/REDIS_SENTINELS/);
  });

  it('reads the Sentinels as hosts and ports, IPv6 in brackets', () => {
    expect(loadConfig({ REDIS_SENTINELS: ' s1.example:26379, [::1]:26380,10.0.0.3:26381 ' }).REDIS_SENTINELS).toEqual([
      { host: 's1.example', port: 26379 },
      { host: '::1', port: 26380 },
      { host: '10.0.0.3', port: 26381 },
    ]);
    expect(loadConfig({}).REDIS_SENTINELS).toEqual([]);
  });

  it('as an environment again (configEnv), parses to the same configuration', () => {
    const config = loadConfig({ REDIS_SENTINELS: 's1.example:26379,[::1]:26380', REDIS_ACK_REPLICAS: '1' });
    expect(loadConfig(configEnv(config))).toEqual(config);
  });
});
