// FORWARD_RULES (services/common/forwarding.ts): read and checked when the configuration loads, so every service
// refuses a rule that would forward to this deployment's own addresses, with the setting named.
import { z } from 'zod';
import type { Config } from './config.ts';

const domainPattern = z.string().regex(/^(\*|(\*\.)?[a-z0-9_-]+(\.[a-z0-9_-]+)*)$/, 'a domain, *.domain or *');
const destination = z
  .string()
  .max(2000)
  .regex(/^(mailto:[^\s@,;?]+@[^\s@,;?]+|https?:\/\/\S+)$/, 'mailto:address or https://…');

const ruleSchema = z
  .object({
    /** Policy domains whose reports go (`*` or left out: every domain). */
    domains: z.array(domainPattern).min(1).default(['*']),
    to: z.array(destination).min(1).max(20),
  })
  .strict();

export type ForwardRule = z.infer<typeof ruleSchema>;

export type ForwardConfig = Pick<
  Config,
  'FORWARD_RULES' | 'FORWARD_ALLOW_PRIVATE' | 'MTA_STS_RUA' | 'SMTP_RECIPIENTS' | 'QUEUE_NAME'
>;

/** A destination as compared: lower case, no trailing slash. */
const normalized = (uri: string): string => uri.trim().toLowerCase().replace(/\/+$/, '');

/**
 * FORWARD_RULES read and checked, or an Error naming what is wrong: not JSON, a bad rule, plain http outside
 * FORWARD_ALLOW_PRIVATE, or one of this deployment's own addresses (MTA_STS_RUA, SMTP_RECIPIENTS): a report forwarded
 * to ourselves would come back to be forwarded again.
 */
export function forwardRules(config: ForwardConfig): ForwardRule[] {
  const text = config.FORWARD_RULES.trim();
  if (text === '') return [];
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new Error('FORWARD_RULES is not JSON');
  }
  const parsed = z.array(ruleSchema).max(100).safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new Error(`FORWARD_RULES: ${issue?.path.join('.') ?? ''}: ${issue?.message ?? 'invalid'}`);
  }
  const own = new Set([
    ...config.MTA_STS_RUA.split(',').map(normalized),
    ...config.SMTP_RECIPIENTS.map((r) => `mailto:${r.toLowerCase()}`),
  ]);
  for (const rule of parsed.data)
    for (const to of rule.to) {
      if (own.has(normalized(to)))
        throw new Error(
          `FORWARD_RULES: ${to} is this deployment's own address (MTA_STS_RUA or SMTP_RECIPIENTS): reports would loop`,
        );
      if (to.startsWith('http://') && !config.FORWARD_ALLOW_PRIVATE)
        throw new Error(`FORWARD_RULES: ${to}: RFC 8460 reports go over https, not http`);
    }
  return parsed.data;
}

const matches = (pattern: string, domain: string): boolean =>
  pattern === '*' || pattern === domain || (pattern.startsWith('*.') && domain.endsWith(pattern.slice(1)));

/** Every destination a report of these policy domains goes to, each once. */
export function destinationsFor(rules: ForwardRule[], domains: string[]): string[] {
  const out = new Set<string>();
  for (const rule of rules)
    if (domains.some((d) => rule.domains.some((p) => matches(p, d.toLowerCase()))))
      for (const to of rule.to) out.add(to);
  return [...out];
}
