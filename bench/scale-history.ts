// A synthetic provider history, written straight into the base tables with INSERT … SELECT FROM numbers() (the
// materialized views of schemas/clickhouse/0005 and 0008 fill the read tables as the pipeline's inserts would):
// `domains` policy domains, one report per domain and day with its raw text, an `sts` and a `tlsa` entry per report
// (Microsoft's shape: the same sessions twice), and a pair of failure details (on the sts entry) on every tenth
// report; the reports of one domain in 1,000 are re-sent with other figures (RESENT_EVERY). Report n is domain
// n % domains on day `lastDay - floor(n / domains)`, so a history grows backwards by adding reports with greater n.
import type { ClickHouseClient } from '../services/common/clickhouse.ts';

export interface HistoryShape {
  domains: number;
  /** The most recent day of the history (YYYY-MM-DD). */
  lastDay: string;
}

export const domainName = (i: number): string => `d${i}.example`;

/**
 * Every report of one domain in 1,000 (those whose index is 5 modulo 1,000) is re-sent with other figures: a second
 * version, marked as the worker marks it (services/worker/reprocessing.ts), so its reads take the version look-up.
 */
export const RESENT_EVERY = 1000;
export const resentDomain = (i: number, domains: number): string =>
  domainName((((i * 7919) % Math.floor(domains / RESENT_EVERY)) * RESENT_EVERY + 5) % domains);

const ORGANIZATIONS = `['google.com', 'microsoft.com', 'mail.ru', 'stalwart.example']`;

/** Reports [first, first + count) of the history: reports, receipts, raw texts, policy entries, failure details. */
export async function insertHistory(
  client: ClickHouseClient,
  shape: HistoryShape,
  first: number,
  count: number,
  version: number,
): Promise<void> {
  const reports = `(SELECT number + ${first} AS n FROM numbers(${count}))`;
  // The expressions every table shares, as columns of a subquery over report numbers.
  const baseOf = (
    numbers: string,
  ): string => `SELECT n, lower(hex(SHA256(concat('scale-', toString(n))))) AS report_key,
      toDate('${shape.lastDay}') - intDiv(n, ${shape.domains}) AS day,
      concat('d', toString(n % ${shape.domains}), '.example') AS policy_domain,
      ${ORGANIZATIONS}[n % 4 + 1] AS organization,
      concat('r', toString(n)) AS report_id,
      toDateTime(day, 'UTC') AS start_time, toDateTime(day, 'UTC') + 86399 AS end_time,
      n % 10 = 0 AS failing
    FROM ${numbers}`;
  const base = baseOf(reports);
  const settings = { max_insert_block_size: '1048576', max_threads: 2 } as const;
  const run = (query: string): Promise<unknown> => client.command({ query, clickhouse_settings: settings });
  await run(`INSERT INTO reports (report_key, organization, report_id, contact_info, start_time, end_time, start_raw,
      end_raw, day, policy_count, flags, extra, json_sha256, receipt_id, received_at, channel, dkim_result, dkim_domain,
      dkim_aligned, normalizer_version, version)
    SELECT report_key, organization, report_id, NULL, start_time, end_time, toString(start_time), toString(end_time),
      day, 2, [], '', report_key, concat('rc-', report_key), end_time + 3600, 'https', '', '', 0, 1, ${version}
    FROM (${base})`);
  await run(`INSERT INTO receipts (receipt_id, received_at, processed_at, channel, remote_address, user_agent,
      content_type, content_encoding, path, body_bytes, body_sha256, outcome, report_key, reject_reason, flags,
      envelope_from, envelope_to, helo, tls_protocol, tls_cipher, message_id, subject, attachment_name, dkim_result,
      dkim_domain, dkim_selector, dkim_aligned, dkim_key_tlsrpt, meta, version)
    SELECT concat('rc-', report_key), end_time + 3600, end_time + 3600, 'https', '192.0.2.1', 'scale', 'application/tlsrpt+gzip',
      '', '/v1/report', 1000, report_key, 'stored', report_key, '', [], '', [], '', '', '', '', '', '', '', '', '', 0, 0,
      '', ${version}
    FROM (${base})`);
  // The report's text as a sender writes it (about 1 KB, as Microsoft's two-policy reports): one report by key reads
  // its raw text too, and a granule of raw_reports is made of such texts.
  await run(`INSERT INTO raw_reports (report_key, json_sha256, day, receipt_id, received_at, raw_json, version)
    SELECT report_key, report_key, day, concat('rc-', report_key), end_time + 3600,
      concat('{"organization-name":"', organization, '","date-range":{"start-datetime":"', toString(start_time),
        'Z","end-datetime":"', toString(end_time), 'Z"},"contact-info":"tlsrpt@', organization, '","report-id":"',
        report_id, '","policies":[{"policy":{"policy-type":"sts","policy-string":["version: STSv1","mode: enforce",',
        '"mx: mx.', policy_domain, '","max_age: 604800"],"policy-domain":"', policy_domain, '","mx-host":["mx.',
        policy_domain, '"]},"summary":{"total-successful-session-count":', toString(100 + n % 50),
        ',"total-failure-session-count":', if(failing, '7', '0'), '}', if(failing,
        concat(',"failure-details":[{"result-type":"certificate-expired","sending-mta-ip":"203.0.113.9",',
          '"receiving-mx-hostname":"mx.', policy_domain, '","receiving-ip":"198.51.100.7","failed-session-count":4},',
          '{"result-type":"validation-failure","sending-mta-ip":"203.0.113.9","receiving-mx-hostname":"mx.',
          policy_domain, '","receiving-ip":"198.51.100.7","failed-session-count":3}]'), ''),
        '},{"policy":{"policy-type":"tlsa","policy-string":["3 1 1 ', lower(hex(SHA256(policy_domain))),
        '"],"policy-domain":"', policy_domain, '","mx-host":["mx.', policy_domain,
        '"]},"summary":{"total-successful-session-count":', toString(100 + n % 50),
        ',"total-failure-session-count":', if(failing, '7', '0'), '}}]}'),
      ${version}
    FROM (${base})`);
  // An sts and a tlsa entry per report; a version re-sent has one more successful session and no failure details.
  const policies = (from: string, v: number, resent: boolean): Promise<unknown> =>
    run(`INSERT INTO policy_results (report_key, policy_index, day, organization, report_id, start_time, end_time,
      policy_type, policy_domain, policy_strings, mx_hosts, sts_version, sts_mode, sts_max_age, sts_mx, tlsa_records,
      successful_sessions, failed_sessions, failure_detail_count, flags, extra, version)
    SELECT report_key, idx, day, organization, report_id, start_time, end_time, ['sts', 'tlsa'][idx + 1],
      policy_domain, [], [concat('mx.', policy_domain)], if(idx = 0, 'STSv1', ''), if(idx = 0, 'enforce', ''),
      if(idx = 0, 604800, NULL), arrayFilter(x -> idx = 0, [concat('mx.', policy_domain)]), [],
      ${resent ? 101 : 100} + n % 50, if(failing, 7, 0), if(failing AND idx = 0, ${resent ? 0 : 2}, 0), [], '', ${v}
    FROM (${from}) ARRAY JOIN [0, 1] AS idx`);
  await policies(base, version, false);
  await run(`INSERT INTO failure_details (report_key, policy_index, detail_index, day, organization, report_id,
      policy_type, policy_domain, result_type, failed_session_count, sending_mta_ip, receiving_mx_hostname,
      receiving_mx_helo, receiving_ip, additional_information, failure_reason_code, flags, extra, version)
    SELECT report_key, 0, d, day, organization, report_id, 'sts', policy_domain,
      ['certificate-expired', 'validation-failure'][d + 1], if(d = 0, 4, 3), '203.0.113.9', concat('mx.', policy_domain),
      NULL, '198.51.100.7', NULL, NULL, [], '', ${version}
    FROM (${base}) ARRAY JOIN [0, 1] AS d WHERE failing`);
  // The re-sent reports: their marks first, as the worker writes them, then the second version's policy entries.
  const resent = baseOf(`(SELECT n FROM ${reports} WHERE n % ${shape.domains} % ${RESENT_EVERY} = 5)`);
  await run(`INSERT INTO reprocessed_reports (policy_domain, day, report_key)
    SELECT policy_domain, day, report_key FROM (${resent})`);
  await policies(resent, version + 1, true);
}
