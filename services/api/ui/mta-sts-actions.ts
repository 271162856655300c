// What the dashboard's MTA-STS forms do (operators): host a domain or change its policy, set its mode (with failures
// accepted), adopt the policy it publishes, stop hosting it. The API's own functions (services/api/mta-sts.ts), so
// the same checks refuse the same changes; each answer is where to go next, or why nothing changed.
import { z } from 'zod';
import { policyInput, stsDomain } from '../../common/sts-policies.ts';
import { adoptPolicy, findPolicy, NoPolicyKnown, PolicyConflict, putPolicy, removePolicy } from '../mta-sts.ts';
import type { Db } from '../queries.ts';
import type { ClickHouseClient } from '../../common/clickhouse.ts';

export const STS_ACTIONS = ['policy', 'mode', 'adopt', 'remove'] as const;
export type StsAction = (typeof STS_ACTIONS)[number];

export type Fields = Record<string, string | string[] | undefined>;

export type StsActionResult =
  { to: string } | { status: number; title: string; message: string; back: string; backLabel: string };

export interface StsActionDeps {
  db: Db;
  clickhouse: ClickHouseClient;
  readinessDays: number;
  by: string;
  now: Date;
}

const first = (v: string | string[] | undefined): string => (Array.isArray(v) ? (v[0] ?? '') : (v ?? ''));
const all = (v: string | string[] | undefined): string[] =>
  (Array.isArray(v) ? v : v === undefined ? [] : [v]).slice(0, 100).map((x) => x.slice(0, 256));
/** MX patterns as typed: one per line, or separated by spaces or commas. */
const patterns = (v: string | string[] | undefined): string[] =>
  first(v)
    .split(/[\s,]+/)
    .filter(Boolean)
    .slice(0, 101);

const page = (domain: string): string => `/ui/mta-sts/${encodeURIComponent(domain)}`;

/** Runs one form's action for `domainText` (from the path or the form); never throws for what a person typed. */
export async function stsAction(
  action: StsAction,
  domainText: string,
  fields: Fields,
  d: StsActionDeps,
): Promise<StsActionResult> {
  const parsedDomain = stsDomain.safeParse(domainText);
  // Back to the domain's page where it is hosted, else to the list (where a new domain's form is).
  let hosted = false;
  const refused = (status: number, message: string): StsActionResult => ({
    status,
    title: 'Not changed',
    message,
    back: hosted && parsedDomain.success ? page(parsedDomain.data) : '/ui/mta-sts',
    backLabel: hosted && parsedDomain.success ? `Back to ${parsedDomain.data}` : 'Back to hosted MTA-STS',
  });
  if (!parsedDomain.success) return refused(400, `"${domainText.slice(0, 100)}" is not a domain name`);
  const domain = parsedDomain.data;
  try {
    const current = await findPolicy(d.clickhouse, domain);
    hosted = current !== undefined;
    if (action === 'adopt') {
      const mx = patterns(fields.mx);
      await adoptPolicy(d.db, d.clickhouse, { domain, mx: mx.length > 0 ? mx : undefined, ...common(d) });
      return { to: page(domain) };
    }
    if (action === 'remove') {
      if (!(await removePolicy(d.clickhouse, { domain, by: d.by, now: d.now })))
        return refused(404, `${domain} is not hosted`);
      return { to: '/ui/mta-sts' };
    }
    if (!current && action === 'mode') return refused(404, `${domain} is not hosted`);
    const input = policyInput.safeParse({
      mode: first(fields.mode) || current?.mode,
      mx: action === 'mode' || !fields.mx ? current?.mx : patterns(fields.mx),
      maxAge: action === 'mode' || !fields.maxAge ? current?.max_age : Number(first(fields.maxAge)),
      acknowledge: { mx: all(fields['ack-mx']), organizations: all(fields['ack-org']) },
    });
    if (!input.success) return refused(400, describe(input.error));
    await putPolicy(d.db, d.clickhouse, { domain, input: input.data, ...common(d) });
    return { to: page(domain) };
  } catch (err) {
    if (err instanceof PolicyConflict) return refused(409, err.message);
    if (err instanceof NoPolicyKnown) return refused(404, err.message);
    throw err;
  }
}

const common = (d: StsActionDeps) => ({ by: d.by, readinessDays: d.readinessDays, now: d.now });

const LABELS: Record<string, string> = { mode: 'Mode', mx: 'MX patterns', maxAge: 'max_age' };

function describe(error: z.ZodError): string {
  return error.issues
    .map((i) => `${LABELS[String(i.path[0])] ?? i.path.join('.')}: ${i.message}`)
    .slice(0, 3)
    .join('; ');
}
