// Development defaults that must never reach production: the records a hosted domain is told to publish would send
// reports to localhost and point `mta-sts.<domain>` at localhost., the receivers would present a self-signed
// certificate, the SMTP receiver would accept mail only for tlsrpt@localhost. With NODE_ENV=production each service
// refuses to start on the ones it uses, naming the setting to change.
import ipaddr from 'ipaddr.js';
import type { Config } from './config.ts';

/** The settings a service uses that have development defaults. */
export type GuardedSetting = 'TLS_CERT_FILE' | 'MTA_STS_RUA' | 'MTA_STS_HOST_TARGET' | 'SMTP_RECIPIENTS';

type GuardConfig = Pick<Config, 'NODE_ENV' | GuardedSetting | 'TLS_KEY_FILE'>;

/** A host name or address that only reaches this machine. */
export function isLocalHost(host: string): boolean {
  const name = host
    .toLowerCase()
    .replace(/\.$/, '')
    .replace(/^\[(.*)\]$/, '$1');
  if (name === 'localhost' || name.endsWith('.localhost') || name === '') return true;
  if (!ipaddr.isValid(name)) return false;
  const range = ipaddr.process(name).range();
  return range === 'loopback' || range === 'unspecified';
}

/** The host of each `mailto:` address or `https:` URL of a rua value (comma-separated URIs). */
function ruaHosts(rua: string): string[] {
  return rua.split(',').map((uri) => {
    const u = uri.trim();
    if (/^mailto:/i.test(u)) return u.slice(u.lastIndexOf('@') + 1).replace(/[?].*$/, '');
    try {
      return new URL(u).hostname;
    } catch {
      return '';
    }
  });
}

/** What is wrong with each of `settings` for production, one line per setting (none: all fine). */
export function developmentDefaults(config: GuardConfig, settings: GuardedSetting[]): string[] {
  const out: string[] = [];
  for (const s of new Set(settings)) {
    if (s === 'TLS_CERT_FILE' && (!config.TLS_CERT_FILE || !config.TLS_KEY_FILE))
      out.push('TLS_CERT_FILE / TLS_KEY_FILE are empty: senders would get the self-signed development certificate');
    if (s === 'MTA_STS_RUA' && ruaHosts(config.MTA_STS_RUA).some(isLocalHost))
      out.push(
        `MTA_STS_RUA=${config.MTA_STS_RUA}: hosted domains would publish a rua that reaches no one; set the address or URL this deployment receives reports at`,
      );
    if (s === 'MTA_STS_HOST_TARGET' && isLocalHost(config.MTA_STS_HOST_TARGET))
      out.push(
        `MTA_STS_HOST_TARGET=${config.MTA_STS_HOST_TARGET}: hosted domains would point mta-sts.<domain> at this machine's loopback; set the public host name of the policy host`,
      );
    if (s === 'SMTP_RECIPIENTS' && config.SMTP_RECIPIENTS.some((r) => isLocalHost(r.slice(r.lastIndexOf('@') + 1))))
      out.push(
        `SMTP_RECIPIENTS=${config.SMTP_RECIPIENTS.join(',')}: a local address; set the address your rua records name`,
      );
  }
  return out;
}

/** Throws, naming every such setting, when NODE_ENV=production and one of `settings` keeps a development default. */
export function refuseDevelopmentDefaults(config: GuardConfig, settings: GuardedSetting[]): void {
  if (config.NODE_ENV !== 'production') return;
  const problems = developmentDefaults(config, settings);
  if (problems.length > 0)
    throw new Error(
      `refusing to start with development defaults (NODE_ENV=production):\n${problems.map((p) => `  ${p}`).join('\n')}`,
    );
}
