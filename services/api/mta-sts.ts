// Hosted MTA-STS policies through the API: list, read, change and remove them (operators). Every change gets a new
// policy id. testing → enforce only when the reports of the last MTA_STS_READINESS_DAYS show no failure under the
// testing policy (apart from those acknowledged); a switch to none keeps the domain served for the previous max_age.
import { toClickHouseDateTime } from '../common/sql.ts';
import type { ClickHouseClient } from '../common/clickhouse.ts';
import {
  clientRows,
  currentPolicies,
  currentPolicy,
  newPolicyId,
  parsePolicy,
  policyText,
  recordsToPublish,
  policyInput,
  type PolicyInput,
  type PublishSettings,
  type StsPolicy,
} from '../common/sts-policies.ts';
import { latestRun } from '../common/posture-store.ts';
import { certificatesOf, type CertificateView } from '../common/sts-certificates.ts';
import { quoteString } from '../common/clickhouse-compat.ts';
import type { PolicyResultRow, Stored } from '../../schemas/rows.ts';
import { readinessVerdict, type Blocker, type ReadinessVerdict } from './readiness.ts';
import type { Db } from './queries.ts';

export class PolicyConflict extends Error {
  constructor(
    message: string,
    readonly detail: unknown = undefined,
  ) {
    super(message);
  }
}

/** No policy of the domain is known (no live check fetched one, no report saw one): nothing to adopt. */
export class NoPolicyKnown extends Error {}

const utc = (t: number): string => toClickHouseDateTime(new Date(t));
const EPOCH = '1970-01-01 00:00:00';
let sequence = 0;

/** A row of sts_policies as `by` changed it at `now`: its change time and the version that orders it. */
async function writePolicyRow(
  ch: ClickHouseClient,
  row: Omit<StsPolicy, 'changed_at'> & { acknowledged: string },
  by: string,
  now: Date,
): Promise<StsPolicy> {
  const t = now.getTime();
  const full = { ...row, changed_at: utc(t), changed_by: by, version: t * 1000 + (sequence++ % 1000) };
  await ch.insert({ table: 'sts_policies', values: [full], format: 'JSONEachRow' });
  return full;
}

/**
 * A hosted policy as the API shows it. Without a usable certificate of mta-sts.<domain> its state is
 * pending-certificate and the `_mta-sts` record is held back (`recordsNotYet`): a sender told by it to fetch the
 * policy would fail TLS. The policy host's record is needed before (an ACME CA reaches the host through it).
 */
export function describePolicy(p: StsPolicy, s: PublishSettings, certificate: CertificateView) {
  const records = recordsToPublish(p, s);
  const ready = certificate.state === 'issued';
  return {
    domain: p.domain,
    state: ready ? ('active' as const) : ('pending-certificate' as const),
    mode: p.mode,
    mx: p.mx,
    maxAge: p.max_age,
    id: p.policy_id,
    changedAt: p.changed_at,
    ...(p.mode === 'none' ? { servedUntil: p.serve_until } : {}),
    policy: policyText(p),
    certificate,
    records: ready ? records : { tlsRpt: records.tlsRpt, policyHost: records.policyHost },
    ...(ready
      ? {}
      : {
          recordsNotYet: { mtaSts: records.mtaSts },
          message: `${certificate.host} has no usable certificate (${certificate.state}: ${certificate.reason}): senders that fetch the policy fail TLS until it has. Publish the policy host's record now; the _mta-sts record once GET /v1/mta-sts/${p.domain} says state active.`,
        }),
  };
}

/** One hosted policy described, with its certificate looked up. */
export async function hostedPolicy(ch: ClickHouseClient, p: StsPolicy, s: PublishSettings, now: Date) {
  return describePolicy(p, s, (await certificatesOf(clientRows(ch), [p.domain], now)).get(p.domain)!);
}

export async function listPolicies(ch: ClickHouseClient, s: PublishSettings, now: Date) {
  const policies = (await currentPolicies(ch)).filter((p) => !p.removed);
  const certificates = await certificatesOf(
    clientRows(ch),
    policies.map((p) => p.domain),
    now,
  );
  return { policies: policies.map((p) => describePolicy(p, s, certificates.get(p.domain)!)) };
}

export async function findPolicy(ch: ClickHouseClient, domain: string): Promise<StsPolicy | undefined> {
  const policy = await currentPolicy(clientRows(ch), domain);
  return policy && !policy.removed ? policy : undefined;
}

/** Sets a domain's policy; the same policy again changes nothing (and keeps its id). */
export async function putPolicy(
  db: Db,
  ch: ClickHouseClient,
  o: { domain: string; input: PolicyInput; by: string; readinessDays: number; now: Date },
): Promise<{ policy: StsPolicy; changed: boolean }> {
  const current = await findPolicy(ch, o.domain);
  const { mode, mx, maxAge } = o.input;
  if (current && current.mode === mode && current.max_age === maxAge && current.mx.join() === mx.join())
    return { policy: current, changed: false };
  let acknowledged: unknown[] = [];
  if (mode === 'enforce' && current?.mode !== 'enforce') acknowledged = await checkReadiness(db, o);
  const now = o.now.getTime();
  // Senders may cache the policy they hold for its max_age: after a switch to none, served that long.
  const serveUntil =
    mode !== 'none'
      ? EPOCH
      : current?.mode === 'none'
        ? current.serve_until
        : utc(now + 1000 * Math.max(maxAge, current?.max_age ?? 0));
  const row = {
    domain: o.domain,
    mode,
    mx,
    max_age: maxAge,
    policy_id: newPolicyId(o.now, current?.policy_id),
    serve_until: serveUntil,
    removed: 0,
    acknowledged: JSON.stringify(acknowledged),
  };
  return { policy: await writePolicyRow(ch, row, o.by, o.now), changed: true };
}

/**
 * testing → enforce: the reports must show the testing policy at work and no failure under it, but for acknowledged
 * MX hosts or reporters. Returns what was acknowledged; throws PolicyConflict with what would fail otherwise.
 */
async function checkReadiness(
  db: Db,
  o: { domain: string; input: PolicyInput; readinessDays: number; now: Date },
): Promise<unknown[]> {
  const r = await readinessVerdict(db, o.domain, o.readinessDays, o.now);
  if (r.testingReports === 0) {
    throw new PolicyConflict(
      `no report in the last ${o.readinessDays} days saw ${o.domain}'s policy in testing mode: publish mode testing first, or adopt the policy it publishes if that is on enforce already (POST /v1/mta-sts/${o.domain}/adopt)`,
    );
  }
  const ack = o.input.acknowledge ?? { mx: [], organizations: [] };
  const accepted = (w: Blocker): boolean =>
    ack.mx.includes(w.receiving_mx_hostname ?? '') || ack.organizations.includes(w.organization);
  const blocking = r.blocking.filter((w) => !accepted(w));
  if (blocking.length > 0) {
    throw new PolicyConflict(
      `sessions failed under the testing policy in the last ${o.readinessDays} days: under enforce, those senders would not deliver to these MX hosts (they would try another or retry later)`,
      blocking.map((w) => ({
        organization: w.organization,
        receivingMx: w.receiving_mx_hostname,
        resultType: w.result_type,
        failedSessions: Number(w.failed),
      })),
    );
  }
  return r.blocking.filter(accepted);
}

/** Removes a hosted domain: only in mode none, once the previous policy's max_age has passed. */
export async function removePolicy(
  ch: ClickHouseClient,
  o: { domain: string; by: string; now: Date },
): Promise<boolean> {
  const current = await findPolicy(ch, o.domain);
  if (!current) return false;
  if (current.mode !== 'none')
    throw new PolicyConflict('switch the policy to mode none first (senders would keep enforcing it)');
  if (utc(o.now.getTime()) < current.serve_until)
    throw new PolicyConflict(`senders may hold the previous policy until ${current.serve_until} UTC: removable then`);
  await writePolicyRow(ch, { ...current, removed: 1, acknowledged: '[]' }, o.by, o.now);
  return true;
}

/** Where an adopted policy came from: the domain's latest live check fetched it, or its reports named it. */
export interface Adopted {
  from: 'live check' | 'reports';
  mode: string;
  /** The id the published policy had (the hosted one gets another: senders fetch it again). */
  id: string;
  at: string;
}

/**
 * Hosts a domain's existing policy at its mode: as the latest live check fetched it (MX patterns imported), else as
 * the reports of the last `readinessDays` saw it (the MX patterns then given: a report's text is the sender's word,
 * anyone can POST one). A domain already on enforce is hosted on enforce, without testing first; the readiness over
 * the same days comes with it, for what the reports say would fail.
 */
export async function adoptPolicy(
  db: Db,
  ch: ClickHouseClient,
  o: {
    domain: string;
    maxAge?: number | undefined;
    mx?: string[] | undefined;
    by: string;
    readinessDays: number;
    now: Date;
  },
): Promise<{ policy: StsPolicy; adopted: Adopted; readiness: ReadinessVerdict }> {
  if (await findPolicy(ch, o.domain))
    throw new PolicyConflict(`${o.domain} is hosted already: change its policy with PUT /v1/mta-sts/${o.domain}`);
  const [live, readiness] = await Promise.all([
    latestRun(db, o.domain),
    readinessVerdict(db, o.domain, o.readinessDays, o.now),
  ]);
  const fetched = live.find((c) => c.check_name === 'policy' && c.policy_text !== '');
  const parsed = fetched ? parsePolicy(fetched.policy_text) : undefined;
  let adopted: Adopted;
  let mx: string[];
  let maxAge: number;
  if (parsed && typeof parsed !== 'string') {
    adopted = { from: 'live check', mode: parsed.mode, id: fetched!.policy_id, at: fetched!.checked_at };
    mx = o.mx ?? parsed.mx;
    maxAge = o.maxAge ?? parsed.maxAge;
  } else {
    const [seen] = await db.rows<Stored<PolicyResultRow, 'sts_mode' | 'sts_max_age'> & { seen_day: string }>(
      `SELECT sts_mode, sts_max_age, toString(day) AS seen_day FROM policy_results
       WHERE policy_domain = ${quoteString(o.domain)} AND policy_type = 'sts' AND sts_mode IN ('enforce', 'testing')
         AND day >= toDate(${quoteString(readiness.from)}) AND day <= toDate(${quoteString(readiness.to)})
       ORDER BY day DESC, sts_mode = 'enforce' DESC LIMIT 1`,
    );
    if (!seen)
      throw new NoPolicyKnown(
        `no live check fetched a policy of ${o.domain} and no report of the last ${o.readinessDays} days saw one in mode enforce or testing: nothing to adopt`,
      );
    if (!o.mx)
      throw new PolicyConflict(
        `only reports saw ${o.domain}'s policy (mode ${seen.sts_mode}): give its MX patterns ("mx"), or run a live check first`,
      );
    adopted = { from: 'reports', mode: seen.sts_mode, id: '', at: seen.seen_day };
    mx = o.mx;
    maxAge = o.maxAge ?? seen.sts_max_age ?? 604_800;
  }
  if (adopted.mode !== 'enforce' && adopted.mode !== 'testing')
    throw new PolicyConflict(`${o.domain}'s policy is in mode ${adopted.mode}: nothing to adopt, host it with PUT`);
  const parsedInput = policyInput.safeParse({ mode: adopted.mode, mx, maxAge: Math.max(86_400, maxAge) });
  if (!parsedInput.success)
    throw new PolicyConflict(
      `the ${adopted.from === 'live check' ? 'fetched' : 'given'} policy cannot be hosted as it is: ${parsedInput.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`,
    );
  const input = parsedInput.data;
  const row = {
    domain: o.domain,
    mode: input.mode,
    mx: input.mx,
    max_age: input.maxAge,
    policy_id: newPolicyId(o.now, adopted.id),
    serve_until: EPOCH,
    removed: 0,
    acknowledged: '[]',
  };
  return { policy: await writePolicyRow(ch, row, o.by, o.now), adopted, readiness };
}
