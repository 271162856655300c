// Hosted MTA-STS in the dashboard (operators): every hosted domain; a domain's policy exactly as senders fetch it, the
// three records to publish with what the latest live check found of each, and its mode with the enforce readiness
// beside it (the same verdict the API's mode change checks).
import { toClickHouseDateTime } from '../../../common/sql.ts';
import { hostedPolicies, currentPolicy, policyText, recordsToPublish } from '../../../common/sts-policies.ts';
import type { PublishSettings, StsPolicy } from '../../../common/sts-policies.ts';
import { checkDetail, latestRun, type StoredCheck } from '../../../common/posture-store.ts';
import {
  certificateHistory,
  certificatesOf,
  certificateView,
  EPOCH,
  type CertificateRow,
  type CertificateView,
} from '../../../common/sts-certificates.ts';
import { readinessVerdict, type ReadinessVerdict } from '../../readiness.ts';
import { Forbidden, NotFound, readableDomain, type PageContext } from '../context.ts';
import { html, plural, number, table, type Html, type Table } from '../html.ts';
import type { Page } from '../layout.ts';
import { checkNowButton } from './checks.ts';

/** Hosted MTA-STS is the operators' (tokens not limited to domains), as in the API. */
export function operatorsOnly(ctx: PageContext): void {
  if (ctx.principal.domains) throw new Forbidden('hosted MTA-STS is for operators');
}

export async function mtaStsPage(ctx: PageContext): Promise<Page> {
  operatorsOnly(ctx);
  const policies = (await hostedPolicies((sql) => ctx.db.rows(sql))).filter((p) => !p.removed);
  const certificates = await certificatesOf(
    (sql) => ctx.db.rows(sql),
    policies.map((p) => p.domain),
    ctx.now,
  );
  const certificate = (p: StsPolicy) => certificates.get(p.domain)!;
  const hosted: Table<StsPolicy> = {
    id: 'hosted',
    caption: 'Hosted domains',
    empty: 'No domain is hosted yet: PUT /v1/mta-sts/{domain}, or adopt a published policy (POST …/adopt).',
    rows: policies,
    columns: [
      {
        label: 'Domain',
        value: (p) => p.domain,
        cell: (p) => html`<a href="/ui/mta-sts/${encodeURIComponent(p.domain)}">${p.domain}</a>`,
      },
      { label: 'Mode', value: (p) => p.mode, cell: (p) => html`<code>${p.mode}</code>` },
      {
        label: 'Certificate',
        value: (p) => certificate(p).state,
        cell: (p) => certificateBadge(certificate(p)),
      },
      { label: 'Valid until (UTC)', value: (p) => certificate(p).validUntil ?? '' },
      { label: 'Policy id', value: (p) => p.policy_id },
      { label: 'max_age (s)', value: (p) => p.max_age, numeric: true },
      { label: 'MX patterns', value: (p) => p.mx.join(' ') },
      { label: 'Changed (UTC)', value: (p) => p.changed_at },
      { label: 'Served until (mode none)', value: (p) => (p.mode === 'none' ? p.serve_until : '') },
    ],
  };
  return {
    title: 'MTA-STS',
    body: html`<h1>Hosted MTA-STS</h1>
      <p class="muted">
        The policies this deployment serves at <code>https://mta-sts.&lt;domain&gt;/.well-known/mta-sts.txt</code>. Open
        a domain for its policy text, the records to publish and whether they are published, and its mode.
      </p>
      ${table(hosted, ctx.query)} ${hostForms()}`,
    tables: [hosted],
  };
}

const CERTIFICATE_BADGE: Record<CertificateView['state'], string> = {
  issued: 'ok',
  expired: 'failing',
  unusable: 'failing',
  failed: 'failing',
  missing: 'failing',
  pending: 'unknown',
  unknown: 'unknown',
};

const certificateBadge = (c: CertificateView): Html =>
  html`<span class="badge badge-${CERTIFICATE_BADGE[c.state]}">${c.state}</span>`;

/** Hosting a new domain, or adopting the policy a domain publishes now (its mode: enforce stays enforce). */
function hostForms(): Html {
  return html`<section aria-labelledby="host">
    <h2 id="host">Host a domain</h2>
    <form method="post" action="/ui/mta-sts" class="inline">
      <input type="hidden" name="action" value="policy" />
      <label>Domain <input name="domain" required placeholder="example.com" /></label>
      <label
        >Mode
        <select name="mode">
          <option value="testing">testing</option>
          <option value="none">none</option>
          <option value="enforce">enforce</option>
        </select></label
      >
      <label>MX patterns <input name="mx" required placeholder="mx1.example.com *.mail.example.com" /></label>
      <label>max_age (s) <input name="maxAge" type="number" min="86400" value="604800" /></label>
      <button type="submit">Host it</button>
    </form>
    <form method="post" action="/ui/mta-sts" class="inline">
      <input type="hidden" name="action" value="adopt" />
      <label>Domain <input name="domain" required placeholder="example.com" /></label>
      <button type="submit">Adopt the policy it publishes</button>
    </form>
    <p class="muted">
      Adopting hosts a domain at the mode its published policy has (enforce stays enforce), with the MX patterns and
      max_age the latest live check fetched. A domain is in effect once the policy host holds a certificate for
      <code>mta-sts.&lt;domain&gt;</code>: until then its page says what the certificate waits for.
    </p>
  </section>`;
}

export interface RecordState {
  name: string;
  record: string;
  state: 'published' | 'wrong' | 'not checked' | 'not yet';
  /** What the latest live check found. */
  found: string;
  /** What to change when it is not published as it should be. */
  change: string;
}

/**
 * Each record to publish, against what the domain's latest live check found. Without a usable certificate of the
 * policy host, `_mta-sts` is "not yet": senders it sends to fetch the policy would fail TLS.
 */
export function recordStates(
  p: StsPolicy,
  s: PublishSettings,
  run: StoredCheck[],
  certificate: CertificateView,
): RecordState[] {
  const records = recordsToPublish(p, s);
  /** A record is published when its check passed and found what this policy needs (`ours`). */
  const state = (
    name: string,
    record: string,
    checkName: string,
    ours: (c: StoredCheck) => boolean,
    wrong: string,
  ): RecordState => {
    const c = run.find((x) => x.check_name === checkName);
    if (!c) return { name, record, state: 'not checked', found: 'no live check yet', change: 'publish it as shown' };
    if (c.severity === 'ok' && ours(c)) return { name, record, state: 'published', found: c.summary, change: '' };
    const change = c.severity === 'ok' ? wrong : 'publish it as shown';
    return { name, record, state: 'wrong', found: c.summary, change };
  };
  const ourRua = s.rua.split(',').map((u) => u.trim().toLowerCase());
  const theirRua = (c: StoredCheck): string[] => {
    const rua = checkDetail(c).rua;
    return Array.isArray(rua) ? rua.map((u) => String(u).toLowerCase()) : [];
  };
  const mtaSts = state(
    `_mta-sts.${p.domain} TXT`,
    records.mtaSts,
    'mta-sts-record',
    (c) => checkDetail(c).id === p.policy_id,
    `set id=${p.policy_id}: every policy change has a new id, and senders fetch the policy again only when it changes`,
  );
  return [
    certificate.state === 'issued'
      ? mtaSts
      : {
          ...mtaSts,
          state: 'not yet',
          change: `publish it (or its new id) once the certificate of ${certificate.host} is issued: until then senders that fetch the policy fail TLS`,
        },
    state(
      `_smtp._tls.${p.domain} TXT`,
      records.tlsRpt,
      'tlsrpt-record',
      (c) => ourRua.every((u) => theirRua(c).includes(u)),
      `add ${s.rua} to its rua (reports go to each address listed; Microsoft sends only to the first)`,
    ),
    state(
      `mta-sts.${p.domain}`,
      records.policyHost,
      'policy',
      (c) => c.policy_text === policyText(p),
      'point it at this deployment as shown: senders fetch another policy now',
    ),
  ];
}

export async function mtaStsDomainPage(ctx: PageContext): Promise<Page> {
  operatorsOnly(ctx);
  const domain = readableDomain(ctx, ctx.params.domain ?? '');
  const policy = await currentPolicy((sql) => ctx.db.rows(sql), domain);
  if (!policy || policy.removed) throw new NotFound(`${domain} is not hosted`);
  const host = `mta-sts.${domain}`;
  const [run, readiness, history] = await Promise.all([
    latestRun(ctx.db, domain),
    readinessVerdict(ctx.db, domain, ctx.readinessDays, ctx.now),
    certificateHistory((sql) => ctx.db.rows(sql), host, 10),
  ]);
  const certificate = certificateView(host, history[0], ctx.now);
  const checkedAt = run[0]?.checked_at;
  const states = recordStates(policy, ctx.publish, run, certificate);
  const records: Table<RecordState> = {
    id: 'records',
    caption: 'Records to publish',
    rows: states,
    columns: [
      { label: 'Name', value: (r) => r.name },
      { label: 'Record', value: (r) => r.record, cell: (r) => html`<code>${r.record}</code>` },
      {
        label: 'Now',
        value: (r) => r.state,
        cell: (r) =>
          html`<span class="badge badge-${r.state === 'published' ? 'ok' : r.state === 'wrong' ? 'failing' : 'unknown'}"
            >${r.state}</span
          >`,
      },
      { label: 'The live check found', value: (r) => r.found },
      { label: 'To change', value: (r) => r.change },
    ],
  };
  return {
    title: `MTA-STS: ${domain}`,
    body: html`<h1>MTA-STS: ${domain}</h1>
      <p>
        Mode <code>${policy.mode}</code>, policy id <code>${policy.policy_id}</code>, max_age
        ${plural(policy.max_age, 'second')}, changed ${policy.changed_at} UTC.
        ${
          policy.mode === 'none'
            ? html`Senders that cached the previous policy may hold it until ${policy.serve_until} UTC: it is served (as
              mode none) until then.`
            : ''
        }
      </p>
      <section aria-labelledby="served">
        <h2 id="served">The policy as senders fetch it</h2>
        <pre>${policyText(policy)}</pre>
      </section>
      ${certificateSection(certificate, history, ctx)} ${table(records, ctx.query)}
      <p class="muted">
        ${
          checkedAt
            ? html`From the live check of ${checkedAt} UTC (<a href="/ui/checks/${encodeURIComponent(domain)}"
                  >every check</a
                >).`
            : html`No live check of ${domain} yet (the scheduler checks hosted domains on its interval).`
        }
      </p>
      ${checkNowButton(domain, `/ui/mta-sts/${encodeURIComponent(domain)}`)} ${modeView(domain, policy, readiness)}
      ${policyForms(domain, policy, ctx.now)}`,
    tables: [records, certificateTable(history)],
  };
}

function certificateTable(history: CertificateRow[]): Table<CertificateRow> {
  return {
    id: 'certificate-history',
    caption: 'Certificate states, newest first',
    empty: 'The policy host has not reported this name yet (it looks every MTA_STS_REFRESH_SECONDS).',
    rows: history,
    columns: [
      { label: 'Since (UTC)', value: (r) => r.checked_at },
      { label: 'State', value: (r) => r.state },
      { label: 'Valid until (UTC)', value: (r) => (r.valid_until === EPOCH ? '' : r.valid_until) },
      { label: 'Issuer', value: (r) => r.issuer },
      { label: 'Why', value: (r) => r.reason },
    ],
  };
}

/** The policy host's certificate: what it is now, in words, and its states over time. */
function certificateSection(c: CertificateView, history: CertificateRow[], ctx: PageContext): Html {
  const now =
    c.state === 'issued'
      ? html`Issued by ${c.issuer ?? 'an unnamed CA'}, valid until ${c.validUntil} UTC: senders can fetch the policy.`
      : html`${c.reason}. Senders that fetch the policy now fail TLS: the <code>_mta-sts</code> record waits until it is
          issued.`;
  return html`<section aria-labelledby="certificate">
    <h2 id="certificate">Certificate of ${c.host}</h2>
    <p>${certificateBadge(c)} ${now}</p>
    ${table(certificateTable(history), ctx.query)}
  </section>`;
}

/** The MX patterns and max_age, changed (a new id); stopping the hosting once mode none has been served long enough. */
function policyForms(domain: string, p: StsPolicy, now: Date): Html {
  const action = (name: string) => `/ui/mta-sts/${encodeURIComponent(domain)}/${name}`;
  const removable = p.mode === 'none' && toClickHouseDateTime(now) >= p.serve_until;
  return html`<section aria-labelledby="change">
    <h2 id="change">Change the policy</h2>
    <form method="post" action="${action('policy')}" class="inline">
      <label>MX patterns <input name="mx" required value="${p.mx.join(' ')}" /></label>
      <label>max_age (s) <input name="maxAge" type="number" min="86400" value="${p.max_age}" /></label>
      <button type="submit">Save</button>
    </form>
    ${
      p.mode !== 'none'
        ? ''
        : removable
          ? html`<form method="post" action="${action('remove')}" class="inline">
              <button type="submit">Stop hosting ${domain}</button>
            </form>`
          : html`<p class="muted">Hosting can stop after ${p.serve_until} UTC, once no sender may hold the policy.</p>`
    }
  </section>`;
}

function modeView(domain: string, p: StsPolicy, r: ReadinessVerdict): Html {
  const verdict =
    p.mode === 'enforce'
      ? html`Enforced since ${p.changed_at} UTC.`
      : r.testingReports === 0
        ? html`<strong>Enforce is refused for now:</strong> no report of the last ${plural(r.days, 'day')} saw the
            policy in <code>testing</code> mode.`
        : r.safe
          ? html`<strong>Safe to switch to enforce:</strong> ${plural(r.testingReports, 'report')} under the testing
              policy in the last ${plural(r.days, 'day')}, no failed session.`
          : html`<strong>Not yet safe to switch to enforce:</strong> ${plural(r.failed, 'failed session')} under the
              testing policy in the last ${plural(r.days, 'day')}, at
              ${r.blocking.map((b) => `${b.receiving_mx_hostname ?? '(no MX named)'} (${b.organization}, ${number(Number(b.failed))})`).join(', ')}.
              Accept them below (kept with the change) to enforce anyway.`;
  const button = (mode: string, label: string, inside: Html | '' = '') =>
    p.mode === mode
      ? ''
      : html`<form method="post" action="/ui/mta-sts/${encodeURIComponent(domain)}/mode" class="inline">
          <input type="hidden" name="mode" value="${mode}" />
          ${inside}
          <button type="submit">${label}</button>
        </form>`;
  // Failures the operator accepts (the API's "acknowledge"): by MX host or by reporter, kept with the change.
  const hosts = [...new Set(r.blocking.map((b) => b.receiving_mx_hostname ?? '').filter((h) => h !== ''))];
  const reporters = [...new Set(r.blocking.map((b) => b.organization))];
  const sessions = (f: (b: ReadinessVerdict['blocking'][number]) => boolean) =>
    number(r.blocking.filter(f).reduce((a, b) => a + Number(b.failed), 0));
  const acknowledge =
    p.mode !== 'enforce' && r.blocking.length > 0
      ? html`<fieldset>
          <legend>Accept these failures and enforce anyway</legend>
          ${hosts.map(
            (h) =>
              html`<label
                ><input type="checkbox" name="ack-mx" value="${h}" /> at ${h}
                (${sessions((b) => b.receiving_mx_hostname === h)} failed)</label
              >`,
          )}
          ${reporters.map(
            (o) =>
              html`<label
                ><input type="checkbox" name="ack-org" value="${o}" /> reported by ${o}
                (${sessions((b) => b.organization === o)} failed)</label
              >`,
          )}
        </fieldset>`
      : '';
  return html`<section aria-labelledby="mode">
    <h2 id="mode">Mode</h2>
    <p>${verdict}</p>
    <p>
      ${button('testing', 'Set testing')} ${button('enforce', 'Set enforce', acknowledge)}
      ${button('none', 'Roll back to none')}
    </p>
    <p class="muted">
      A change gets a new policy id: update the <code>_mta-sts</code> record's id above. Rolling back to none keeps the
      domain served for the previous max_age, so senders that cached the policy learn that it ended.
    </p>
  </section>`;
}
